"""The erasure proof: every place the store and `SWITCHBOARD_HOME` hold, searched for a forgotten text's traces.

After `forget … --verify`, the traces collected before forgetting (store/erasure_traces.py) are
looked for in:

- every table and column of the store, reflected from the database, so a table added later is
  searched too (texts and JSON as text);
- the bytes of the SQLite file and its WAL after a `wal_checkpoint(TRUNCATE)`: a deleted row's bytes
  stay in the file's free pages unless they are overwritten, which `PRAGMA secure_delete=ON` (set on
  every connection, store/db.py) does as they are freed; on PostgreSQL, the output of `pg_dump`
  (deleted rows wait in the server's files for VACUUM, which `pg_dump` does not see);
- every file under `SWITCHBOARD_HOME`, binary files as bytes (adapters, banks, snapshots, caches, logs,
  reports), and each adapter's `snapshot.json` and bank rows for the forgotten texts' ids;
- Slack's remaining posts, searched by the caller (bot/erasure_slack.py) with `search_values`.

A place is reported with the kinds of trace it holds, never the trace itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from store.erasure_traces import WORD, Trace, traces_of, words
from store.forget import posts_about, queries_to_forget
from store.split import text_hash
from store.tables import BaselineShot, Department, Query, SlackMessage, SlackPost

CHUNK = 8 << 20
CUSTOMER_TABLES = frozenset({"queries", "slack_events", "baseline_shots"})  # their words are customers'
QUERY_ID = "forgotten text's id"
WEIGHTS = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".onnx")  # numbers, not text: searched for long forms
LONG_FORM = 8
BANK_IDS = "query_ids"  # a bank's tensor of each row's query id


@dataclass(frozen=True)
class Target:
    """What to look for after a forget, and where in Slack: collected before the rows go."""

    traces: list[Trace]
    query_ids: list[int]
    channels: list[str]  # every channel the bot posts into
    threads: list[tuple[str, str]]  # (channel, ts): the forgotten messages' threads and the bot's posts about them
    oldest: str | None  # the oldest forgotten message's ts: posts about it are newer


def target_of(session: Session, messages: list[SlackMessage], *, user: str | None, home: Path) -> Target:
    queries = queries_to_forget(session, messages, user=user)
    ids = {q.id for q in queries if q.id is not None}
    hashes = {q.text_hash for q in queries}
    kept = [q.text for q in session.exec(select(Query)) if q.id not in ids]
    kept += [s.text for s in session.exec(select(BaselineShot)) if text_hash(s.text) not in hashes]
    departments = list(session.exec(select(Department)))
    traces = traces_of([q.text for q in queries], kept_texts=kept, departments=[d.name for d in departments],
                       home=home, known=product_words(session))
    channels = {c for c in session.exec(select(SlackPost.channel))} | {d.channel for d in departments if d.channel}
    threads = [(m.channel, m.ts) for m in messages]
    threads += [(p.channel, p.ts) for p in posts_about(session, messages) if p.ts]
    return Target(traces, sorted(ids), sorted(channels), threads,
                  min((m.ts for m in messages), key=float) if messages else None)


def product_words(session: Session) -> set[str]:
    """The words the product writes itself: its tables' and columns' names (in the database's own bytes and
    dump) and the values of every table that holds no customer text (reports, records, settings)."""
    conn = session.connection()
    found: set[str] = set()
    for table in inspect(conn).get_table_names():
        columns = [c["name"] for c in inspect(conn).get_columns(table)]
        names = " ".join([table, *columns])
        found |= words(names) | words(names.replace("_", " "))
        if table in CUSTOMER_TABLES:
            continue
        quoted = ", ".join(f'"{c}"' for c in columns)
        for row in conn.execute(text(f'SELECT {quoted} FROM "{table}"')):
            found |= {w for value in row if (as_text := _as_text(value)) for w in words(as_text)}
    return found


@dataclass
class Proof:
    found: dict[str, set[str]] = field(default_factory=dict)  # place -> the kinds of trace it holds
    searched: list[str] = field(default_factory=list)  # the kinds of place searched
    not_searched: list[str] = field(default_factory=list)  # "PostgreSQL dump: pg_dump not found"

    def add(self, place: str, kinds: Iterable[str]) -> None:
        kinds = set(kinds)
        if kinds:
            self.found.setdefault(place, set()).update(kinds)

    def to_dict(self) -> dict[str, Any]:
        return {"places": [{"place": p, "kinds": sorted(k)} for p, k in sorted(self.found.items())],
                "searched": self.searched, "not_searched": self.not_searched}

    def text(self) -> str:
        count = len(self.found)
        lines = [f"{count} {'place holds' if count == 1 else 'places hold'} it"]
        lines += [f"  {place}: {', '.join(sorted(kinds))}" for place, kinds in sorted(self.found.items())]
        lines += [f"not searched: {why}" for why in self.not_searched]
        return "\n".join(lines)


class Matcher:
    """Finds which kinds of trace a text or a stream of bytes holds (case-insensitively); a word only whole
    ("example" is not in "examples"), a detail anywhere."""

    def __init__(self, traces: Iterable[Trace]) -> None:
        self.kind_of = {form: trace.kind for trace in traces for form in trace.forms}
        forms = sorted(self.kind_of, key=len, reverse=True)
        self.longest = max(map(len, forms), default=0) * 6  # a form's bytes, JSON-escaped at worst
        pieces = [rf"(?<!\w){re.escape(f)}(?!\w)" if self.kind_of[f] == WORD else re.escape(f) for f in forms]
        self.pattern = re.compile("|".join(pieces), re.IGNORECASE) if forms else None

    def in_text(self, value: str) -> set[str]:
        if self.pattern is None:
            return set()
        return {self.kind_of[m.group(0).lower()] for m in self.pattern.finditer(value)
                if m.group(0).lower() in self.kind_of}

    def in_bytes(self, chunks: Iterator[bytes], *, long_only: bool = False) -> set[str]:
        """`long_only`: forms of LONG_FORM characters or more, for weights, whose bytes spell a short word by
        chance. Each form is looked for with `bytes.find` in the lower-cased chunk: a regular expression of
        them all is far slower over a model's weights."""
        wanted = [(form.encode(), kind) for form, kind in self.kind_of.items()
                  if not long_only or len(form) >= LONG_FORM]
        found: set[str] = set()
        tail = b""
        for chunk in chunks:
            data = tail + chunk.lower()
            for needle, kind in wanted:
                if kind not in found and _holds(data, needle, whole=kind == WORD):
                    found.add(kind)
            tail = data[-self.longest:] if self.longest else b""
        return found


_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_")


def _holds(data: bytes, needle: bytes, *, whole: bool) -> bool:
    at = data.find(needle)
    while at >= 0:
        end = at + len(needle)
        before = data[at - 1] if at > 0 else None
        after = data[end] if end < len(data) else None
        if not whole or (before not in _WORD_BYTES and after not in _WORD_BYTES):
            return True
        at = data.find(needle, at + 1)
    return False


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode(errors="replace")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return None


def search_values(proof: Proof, place: str, values: Iterable[Any], matcher: Matcher) -> None:
    """Texts or JSON-like values (Slack's messages, say) as one place."""
    for value in values:
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)
        if (found := _as_text(value)) is not None:
            proof.add(place, matcher.in_text(found))


def search_tables(session: Session, proof: Proof, matcher: Matcher) -> None:
    conn = session.connection()
    for table in inspect(conn).get_table_names():
        columns = [c["name"] for c in inspect(conn).get_columns(table)]
        quoted = ", ".join(f'"{c}"' for c in columns)
        for row in conn.execute(text(f'SELECT {quoted} FROM "{table}"')):
            for column, value in zip(columns, row, strict=True):
                if (found := _as_text(value)) is not None:
                    proof.add(f"table {table}.{column}", matcher.in_text(found))
    proof.searched.append("every table and column")


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def database_files(session: Session) -> list[Path]:
    """The SQLite file and its WAL, emptied into the file first (TRUNCATE leaves the WAL empty); none on
    another database."""
    bind = session.get_bind()
    url = make_url(str(bind.url)) if hasattr(bind, "url") else None
    if url is None or url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return []
    session.connection().exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    main = Path(url.database)
    return [p for p in (main, Path(f"{main}-wal"), Path(f"{main}-journal")) if p.exists()]


def search_database_bytes(session: Session, proof: Proof, matcher: Matcher, *, home: Path) -> list[Path]:
    """The database's own bytes: the SQLite files (returned), or PostgreSQL's dump."""
    files = database_files(session)
    if files:
        for file in files:
            proof.add(f"database file {_name(file, home)}", matcher.in_bytes(_file_chunks(file)))
        proof.searched.append("the SQLite file and its WAL, as bytes")
        return files
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        dump = pg_dump_output(str(getattr(bind, "url", "")))
        if isinstance(dump, str):
            proof.not_searched.append(f"PostgreSQL's dump: {dump}")
        else:
            proof.add("PostgreSQL dump (pg_dump)", matcher.in_bytes(iter([dump])))
            proof.searched.append("PostgreSQL's dump (pg_dump)")
    return []


def pg_dump_binary() -> str | None:
    """`pg_dump` on the PATH, or the newest in Debian's PostgreSQL folders."""
    found = shutil.which("pg_dump")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"),
                        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return str(candidates[-1]) if candidates else None


def pg_dump_output(url: str) -> bytes | str:
    """The database's data as `pg_dump` writes it, or why there is none."""
    binary = pg_dump_binary()
    if binary is None:
        return "pg_dump not found (install PostgreSQL's client programs)"
    parsed = make_url(url).set(drivername="postgresql")
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
    dsn = parsed.set(password=None).render_as_string(hide_password=False)
    try:
        done = subprocess.run([binary, "--data-only", "--no-owner", f"--dbname={dsn}"], capture_output=True,
                              env=env, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"pg_dump failed: {type(exc).__name__}"
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        return f"pg_dump failed: {reason[-1] if reason else done.returncode}"
    return done.stdout


def _name(path: Path, home: Path) -> str:
    try:
        return str(path.relative_to(home))
    except ValueError:
        return str(path)


def search_files(home: Path, proof: Proof, matcher: Matcher, *, query_ids: Iterable[int] = (),
                 skip: Iterable[Path] = ()) -> None:
    """Every file under `home`, as bytes; snapshots also for the forgotten texts' ids."""
    skipped = {p.resolve() for p in skip}
    ids = set(query_ids)
    for file in sorted(home.rglob("*")) if home.is_dir() else []:
        if not file.is_file() or file.is_symlink() or file.resolve() in skipped:
            continue
        place = f"file {_name(file, home)}"
        weights = file.suffix in WEIGHTS
        proof.add(place, matcher.in_bytes(_file_chunks(file), long_only=weights))
        if file.suffix == ".safetensors":
            proof.add(place, matcher.in_text(_safetensors_header(file)))
        if ids and ((file.name == "snapshot.json" and _names_ids(file, ids))
                    or (file.suffix == ".safetensors" and _bank_holds(file, ids))):
            proof.add(place, [QUERY_ID])
    proof.searched.append(f"every file under {home}")


def _safetensors_header(file: Path) -> str:
    """The JSON header of a safetensors file (tensor names and metadata), where text could hide among numbers."""
    with file.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        return handle.read(min(size, 100 << 20)).decode(errors="replace")


def _bank_holds(file: Path, ids: set[int]) -> bool:
    """Whether a bank's rows (its `query_ids` tensor, classifier/routing/adapters.py) include one of `ids`."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="numpy") as handle:
            if BANK_IDS not in list(handle.keys()):
                return False
            return bool(set(handle.get_tensor(BANK_IDS).tolist()) & ids)
    except Exception:  # safetensors raises its own error types for a damaged file; the bytes were searched
        return False


def _names_ids(snapshot: Path, ids: set[int]) -> bool:
    try:
        data = json.loads(snapshot.read_text())
    except (OSError, ValueError):
        return False
    return any(isinstance(row, list) and row and row[0] in ids
               for part in ("train", "trained_on", "holdout") for row in data.get(part, []))


def prove(session: Session, *, home: Path, traces: list[Trace], query_ids: Iterable[int] = ()) -> Proof:
    """Searches the store and the files under `home` (Slack is the caller's) for the traces."""
    proof, matcher = Proof(), Matcher(traces)
    search_tables(session, proof, matcher)
    database = search_database_bytes(session, proof, matcher, home=home)
    search_files(home, proof, matcher, query_ids=query_ids, skip=database)
    return proof
