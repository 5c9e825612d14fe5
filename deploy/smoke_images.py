"""The images deploy/smoke.sh needs: a Debian base from Debian's packages (where no registry can be pulled from), a
PostgreSQL 15 image from Debian's `postgresql-15` that starts as the official `postgres:15` does (compose keeps
`postgres:15` for users), and Switchboard's own image from deploy/Dockerfile. Existing base and PostgreSQL images
are reused; the app image is always rebuilt (podman's layer cache keeps that quick when nothing changed)."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

Run = Callable[..., subprocess.CompletedProcess[str]]

POSTGRES_ENTRYPOINT = """#!/bin/sh
# As postgres:15's entrypoint does for POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB: a new data folder is
# initialised once, then the server runs in the foreground, listening on every interface with passwords.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s\\n' "$POSTGRES_PASSWORD" > /tmp/pwfile
  initdb --username="$POSTGRES_USER" --pwfile=/tmp/pwfile --auth-host=scram-sha-256 --auth-local=trust \\
    --encoding=UTF8 --locale=C.UTF-8 \\
    -D "$PGDATA" >/dev/null
  rm /tmp/pwfile
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "CREATE DATABASE \\"$POSTGRES_DB\\" OWNER \\"$POSTGRES_USER\\";" \\
    | postgres --single -D "$PGDATA" postgres >/dev/null
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
"""

POSTGRES_CONTAINERFILE = """FROM {base}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \\
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY entrypoint.sh /usr/local/bin/postgres-entrypoint
RUN chmod 755 /usr/local/bin/postgres-entrypoint && mkdir -p "$PGDATA" /run/postgresql \\
 && chown -R postgres:postgres /var/lib/postgresql /run/postgresql
USER postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
"""


def exists(run: Run, image: str) -> bool:
    return run("podman", "image", "exists", image, check=False).returncode == 0


def build_base(run: Run, image: str, work: Path) -> None:
    """Debian bookworm, minbase, with python3, venv and CA certificates (about 80 s the first time)."""
    if exists(run, image):
        return
    rootfs = work / "rootfs"
    run("debootstrap", "--variant=minbase", "--include=python3,python3-venv,python-is-python3,ca-certificates",
        "bookworm", str(rootfs), "http://deb.debian.org/debian", timeout=1800)
    tarball = work / "rootfs.tar"
    run("tar", "-C", str(rootfs), "-cf", str(tarball), ".")
    run("podman", "import", "--change", "CMD [\"/bin/bash\"]", str(tarball), image)
    tarball.unlink()
    run("rm", "-rf", str(rootfs))


def build_postgres(run: Run, image: str, base: str, work: Path) -> None:
    if exists(run, image):
        return
    context = Path(tempfile.mkdtemp(prefix="postgres-image-", dir=work))
    (context / "Containerfile").write_text(POSTGRES_CONTAINERFILE.format(base=base))
    (context / "entrypoint.sh").write_text(POSTGRES_ENTRYPOINT)
    run("podman", "build", "-t", image, "-f", str(context / "Containerfile"), str(context), timeout=1800)


def build_app(run: Run, image: str, root: Path, *, base: str | None, wheels: str | None,
              ca_bundle: str | None) -> None:
    # docker format: the OCI format has no HEALTHCHECK, and podman drops it with a warning
    command = ["podman", "build", "--format", "docker", "-f", str(root / "deploy" / "Dockerfile"), "-t", image]
    if base:
        command += ["--build-arg", f"BASE={base}"]
    if wheels:
        command += ["-v", f"{Path(wheels).resolve()}:/wheels:ro", "--build-arg", "TORCH_WHEELS=/wheels"]
    if ca_bundle:
        command += ["-v", f"{Path(ca_bundle).resolve()}:/run/smoke-ca.crt:ro",
                    "--build-arg", "PIP_CA_BUNDLE=/run/smoke-ca.crt"]
    run(*command, str(root), timeout=3600)


def image_size_mb(run: Run, image: str) -> float:
    return int(run("podman", "image", "inspect", "--format", "{{.Size}}", image).stdout.strip()) / 1e6
