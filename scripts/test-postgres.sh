#!/usr/bin/env bash
# The store, pipeline, gate and bot tests again, on a throwaway PostgreSQL server (scripts/postgres.sh)
# whose time zone is not UTC; the fault matrix and the upgrades from every earlier schema included.
# Run scripts/test.sh first: it installs .venv. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
read -r pgdir url < <(scripts/postgres.sh start)
trap 'scripts/postgres.sh stop "$pgdir"' EXIT
TEST_POSTGRES_URL=$url .venv/bin/python -m pytest -q -n 2 --durations=25 --store=postgres -m "not slow" \
    tests/test_split.py tests/test_import.py tests/test_holdout.py tests/test_gate.py tests/test_pipeline.py \
    tests/test_faults.py tests/test_loop.py tests/test_cold_start.py tests/test_cost.py tests/test_baseline.py \
    tests/test_out_of_scope.py tests/test_bot.py tests/test_out_of_scope_bot.py tests/test_audits.py \
    tests/test_outbox.py tests/test_trainer_service.py tests/test_replicas.py tests/test_metrics_drift.py tests/test_label_history.py \
    tests/test_fault_matrix.py tests/test_delivery.py tests/test_upgrades.py tests/test_forgetting.py tests/test_retention.py tests/test_shadow.py "$@"
