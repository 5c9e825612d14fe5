#!/usr/bin/env bash
# The fast tests of the modules marked `postgres` (tests/conftest.py: the store, pipeline, gate and bot tests,
# the fault matrix and the upgrades from every earlier schema included) alone, on a throwaway PostgreSQL
# server (scripts/postgres.sh) whose time zone is not UTC. CI runs them in the same session as the rest
# instead (.ci/run: scripts/test.sh --store=both). Run scripts/test.sh first: it installs .venv.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
read -r pgdir url < <(scripts/postgres.sh start)
trap 'scripts/postgres.sh stop "$pgdir"' EXIT
TEST_POSTGRES_URL=$url .venv/bin/python -m pytest -q -n 2 --durations=25 --store=postgres -m "postgres and not slow" "$@"
