"""Dumps the stores that the code of each schema version created, for upgrade tests (tests/old_stores/).

Early migrations create tables from the SQLModel classes of the checkout that runs them, so a store
created today at version k is not the store that version k's code created (migration 7's raw
`TIMESTAMP` columns exist only on stores created before it, for one). This script rebuilds the old
stores from the old code itself:

1. For each k below HEAD's number of migrations, finds the newest commit in `git rev-list HEAD` whose
   store/migrations.py lists exactly k migrations in `MIGRATIONS` (counted by parsing the file).
2. Checks that commit out with `git worktree add --detach` into a temporary folder and, in a
   subprocess with that worktree first on PYTHONPATH, runs *that commit's* `store.migrations.migrate`
   on an engine from *that commit's* `store.db.make_engine` (SQLAlchemy's `create_engine` if it has
   none): (a) on a new SQLite file, (b) on a new database of a throwaway PostgreSQL server
   (scripts/postgres.sh, started once for the run and stopped at the end). The worktree is removed.
3. Sets every timestamp value in the rows the migrations inserted (schema_version.applied_at,
   registry.changed_at) to the commit's time, so that a re-run writes the same files; nothing else is
   changed.
4. Dumps SQLite with Python's `sqlite3` `iterdump()` (its CREATE INDEX lines sorted: SQLAlchemy's
   creation order varies from run to run) and PostgreSQL with `pg_dump --no-owner --no-privileges
   --inserts` (PGTZ=UTC; lines starting with a backslash, psql's meta-commands, are dropped so the SQL
   runs through psycopg), into tests/old_stores/v{k}.sqlite.sql and tests/old_stores/v{k}.postgres.sql.

The old code runs with the library versions of the Python that runs this script (the project's .venv,
say; `--python` picks another interpreter), not the versions installed when the commit was made. That
matters: SQLModel maps a bare `datetime` field to an aware type (PostgreSQL `timestamptz`) from 0.0.45
on but to a naive `DateTime` (`timestamp without time zone`) up to 0.0.44, so the tables that early
migrations create from the models carry the installed SQLModel's choice.

Usage, from the repository root (the server runs as the postgres user, so as root or with sudo rights):
    .venv/bin/python scripts/dump_old_stores.py [--out tests/old_stores] [--versions 1 2 ...] [--python PY]
"""

from __future__ import annotations

import argparse
import ast
import glob
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_FILE = "store/migrations.py"

# Run in a subprocess, with the old worktree first on the path: its store, not ours.
CREATE = """
import sys
url, worktree = sys.argv[1], sys.argv[2]
import store.migrations as migrations
assert migrations.__file__.startswith(worktree), f"imported {migrations.__file__}, not the worktree's"
try:
    from store.db import make_engine
except ImportError:
    from sqlalchemy import create_engine as make_engine
engine = make_engine(url)
print("applied", migrations.migrate(engine))
engine.dispose()
"""


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def migration_count(source: str) -> int | None:
    """How many entries the module-level `MIGRATIONS` list has, or None if there is none."""
    for node in ast.parse(source).body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id == "MIGRATIONS" and isinstance(value, ast.List):
            return len(value.elts)
    return None


def commits_by_version() -> tuple[dict[int, str], int]:
    """For each migration count, the newest commit (reachable from HEAD) whose store/migrations.py has it;
    and HEAD's count."""
    newest: dict[int, str] = {}
    for commit in git("rev-list", "HEAD").split():
        shown = subprocess.run(["git", "show", f"{commit}:{MIGRATIONS_FILE}"], cwd=ROOT, capture_output=True,
                               text=True)
        if shown.returncode != 0:  # no store/migrations.py in this commit
            continue
        count = migration_count(shown.stdout)
        if count is not None:
            newest.setdefault(count, commit)
    head = migration_count(git("show", f"HEAD:{MIGRATIONS_FILE}"))
    assert head is not None, "HEAD's store/migrations.py has no MIGRATIONS list"
    return newest, head


def commit_time(commit: str) -> datetime:
    return datetime.fromtimestamp(int(git("log", "-1", "--format=%ct", commit)), UTC)


def pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if not found:
        sys.exit("no PostgreSQL binaries under /usr/lib/postgresql/*/bin (scripts/postgres.sh start installs them)")
    return Path(found[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create(python: str, worktree: Path, url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "DATABASE_URL"))}
    env["PYTHONPATH"] = str(worktree)
    done = subprocess.run([python, "-c", CREATE, url, str(worktree)], cwd=worktree, env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"migrating {url} with {worktree} failed:\n{done.stdout}{done.stderr}")


def header(version: int, commit: str, when: datetime, dialect: str) -> str:
    subject = git("log", "-1", "--format=%s", commit).strip()
    subject = subject if len(subject) <= 90 else subject[:87] + "..."
    return (f"-- A Switchboard store at schema version {version}, on {dialect}, as commit {commit[:12]}"
            f" ({when:%Y-%m-%d %H:%M} UTC) created it:\n-- {subject}\n"
            f"-- Generated by scripts/dump_old_stores.py; load with tests.old_stores.load_old_store.\n")


def dump_sqlite(path: Path, when: datetime) -> str:
    with sqlite3.connect(path) as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for _, column, kind, *_ in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                if "DATE" in kind.upper() or "TIME" in kind.upper():
                    db.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE "{column}" IS NOT NULL',
                               (when.strftime("%Y-%m-%d %H:%M:%S"),))  # CURRENT_TIMESTAMP's format
        db.commit()
        lines = list(db.iterdump())
    db.close()
    # SQLAlchemy creates a table's indexes in the order of a set of objects, and iterdump() writes them
    # in creation order: sorted, a re-run writes the same file. They come last, just before COMMIT.
    indexes = sorted(line for line in lines if line.startswith(("CREATE INDEX ", "CREATE UNIQUE INDEX ")))
    lines = [line for line in lines if line not in indexes]
    assert lines[-1] == "COMMIT;", lines[-1]
    return "\n".join([*lines[:-1], *indexes, lines[-1]]) + "\n"


def dump_postgres(url: str, when: datetime, bin_dir: Path) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND data_type LIKE 'timestamp%'").fetchall()
        for table, column in columns:
            conn.execute(f'UPDATE "{table}" SET "{column}" = %s WHERE "{column}" IS NOT NULL',
                         (when.strftime("%Y-%m-%d %H:%M:%S+00"),))
    dumped = subprocess.run([str(bin_dir / "pg_dump"), "--no-owner", "--no-privileges", "--inserts", "-d", url],
                            check=True, capture_output=True, text=True, env={**os.environ, "PGTZ": "UTC"}).stdout
    return "".join(line for line in dumped.splitlines(keepends=True) if not line.startswith("\\"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "old_stores")
    parser.add_argument("--versions", type=int, nargs="*",
                        help="these schema versions (default: each one before HEAD's, whose store today's code makes)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs the old code")
    args = parser.parse_args()
    python = args.python if os.sep not in args.python else os.path.abspath(args.python)  # the old code runs elsewhere

    found, head = commits_by_version()
    versions = args.versions or sorted(v for v in found if v < head)
    missing = [v for v in versions if v not in found]
    if missing:
        sys.exit(f"no commit has exactly {missing} migrations; found {sorted(found)}")
    args.out.mkdir(parents=True, exist_ok=True)
    bin_dir = pg_bin()
    env = {**os.environ, "PGPORT_FOR_TESTS": os.environ.get("PGPORT_FOR_TESTS", str(free_port()))}
    started = subprocess.run([str(ROOT / "scripts/postgres.sh"), "start"], check=True, capture_output=True,
                             text=True, env=env)
    pg_dir, server_url = started.stdout.split()
    server = server_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        import psycopg

        with tempfile.TemporaryDirectory(prefix="old-stores-") as tmp:
            for version in versions:
                commit = found[version]
                when = commit_time(commit)
                worktree = Path(tmp) / f"v{version}"
                git("worktree", "add", "--detach", str(worktree), commit)
                try:
                    sqlite_path = Path(tmp) / f"v{version}.db"
                    create(python, worktree, f"sqlite:///{sqlite_path}")
                    database = f"old_store_v{version}"
                    with psycopg.connect(server, autocommit=True) as conn:
                        conn.execute(f"DROP DATABASE IF EXISTS {database}")
                        conn.execute(f"CREATE DATABASE {database}")
                    pg_url = server.rsplit("/", 1)[0] + f"/{database}"
                    create(python, worktree, pg_url.replace("postgresql://", "postgresql+psycopg://"))
                finally:
                    git("worktree", "remove", "--force", str(worktree))
                (args.out / f"v{version}.sqlite.sql").write_text(
                    header(version, commit, when, "SQLite") + dump_sqlite(sqlite_path, when))
                (args.out / f"v{version}.postgres.sql").write_text(
                    header(version, commit, when, "PostgreSQL") + dump_postgres(pg_url, when, bin_dir))
                print(f"v{version}: {commit[:12]} {when:%Y-%m-%d %H:%M} UTC", flush=True)
    finally:
        git("worktree", "prune")
        subprocess.run([str(ROOT / "scripts/postgres.sh"), "stop", pg_dir], check=False, capture_output=True)


if __name__ == "__main__":
    main()
