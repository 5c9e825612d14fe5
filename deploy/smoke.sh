#!/usr/bin/env bash
# The deployment smoke test: builds the image, brings compose's `cpu` profile up with podman and drives it as
# Slack would (deploy/smoke.py, deploy/smoke_checks.py). Writes bench/results/deploy-smoke.json. Needs podman.
#
#   bash deploy/smoke.sh                                   # on the official Python image (pulled)
#   bash deploy/smoke.sh --base debian --wheels /opt/wheels --ca-bundle /etc/ssl/certs/ca-certificates.crt
#                                                          # where no registry can be pulled from (how CI runs it)
#
# Compose: podman-compose from PyPI (1.1 or newer), installed into .switchboard/smoke-tools when the one on PATH is
# older: Debian bookworm's 1.0.3 ignores `profiles` and would start the GPU services too. docker-compose 1.29
# against podman's socket would also do, but needs the podman system service running, which a host without
# systemd does not have. Podman runs here with its own containers.conf (runc, no default ulimits): the
# settings a container sandbox needs, harmless elsewhere; SMOKE_CONTAINERS_CONF=FILE uses yours instead.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v podman >/dev/null || { echo "smoke: podman is not installed (apt-get install podman runc)" >&2; exit 2; }

tools=.switchboard/smoke-tools
compose=podman-compose
version=$(podman-compose version 2>/dev/null | sed -n 's/^podman-compose version *//p' | head -1 || true)
if [ -z "$version" ] || [ "$(printf '%s\n' "$version" 1.1 | sort -V | head -1)" != 1.1 ]; then
    if [ ! -x "$tools/bin/podman-compose" ]; then
        python3 -m venv "$tools"
        "$tools/bin/pip" install -q "podman-compose>=1.1" 2>&1 | { grep -v "^WARNING: Location" || true; }
    fi
    compose="$tools/bin/podman-compose"
fi

if [ -z "${SMOKE_CONTAINERS_CONF:-}" ]; then
    SMOKE_CONTAINERS_CONF=.switchboard/smoke-containers.conf
    mkdir -p .switchboard
    printf '[containers]\ndefault_ulimits = []\n\n[engine]\n%s\n' \
        "$(command -v runc >/dev/null && echo 'runtime = "runc"')" > "$SMOKE_CONTAINERS_CONF"
fi
export CONTAINERS_CONF=$PWD/$SMOKE_CONTAINERS_CONF

python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
exec "$python" deploy/smoke.py --compose "$compose" "$@"
