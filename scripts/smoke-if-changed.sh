#!/usr/bin/env bash
# Runs the deployment smoke test (deploy/smoke.sh) when the packaging changed since the commit it last passed on:
# deploy/ (its prose aside) or pyproject.toml's build tables (scripts/packaging_changed.py; the code inside the
# image is the test suite's; the smoke proves the packaging). deploy/smoke.py's _tested_commit asks the same.
# The smoke takes 6 minutes on 2 cores with its images cached and about 15 from nothing (bench/results/deploy-smoke.json;
# deploy/README.md), more than CI's budget allows on every change, so it runs here only then,
# installing podman, runc and debootstrap from Debian's packages first. The commit it passed on is the "commit"
# of bench/results/deploy-smoke.json.
set -euo pipefail
cd "$(dirname "$0")/.."
passed=$(python3 -c "import json; print(json.load(open('bench/results/deploy-smoke.json')).get('commit', ''))" \
         2>/dev/null || true)
if [ -n "$passed" ] && python3 scripts/packaging_changed.py "$passed"; then
    echo "smoke: the packaging (deploy/, pyproject.toml's build tables) unchanged since $passed, where it passed: not run"
    exit 0
fi
echo "smoke: the packaging changed since the smoke last passed (${passed:-never}): running it"
if ! command -v podman >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi
wheels=(); [ -d /opt/wheels ] && wheels=(--wheels /opt/wheels)
ca=(); [ -n "${PIP_CERT:-}" ] && ca=(--ca-bundle "$PIP_CERT")
bash deploy/smoke.sh --base debian "${wheels[@]}" "${ca[@]}"
