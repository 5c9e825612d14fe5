"""Any bytes in any format: the importer gives rows or line-numbered rejections, never an exception,
and a file refused whole leaves the store as it was. A fixed example budget keeps CI fast."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.db import make_engine, session_factory, transaction
from store.examples import add_examples, labelled_examples
from store.formats import UnreadableFile, read_labelled_file
from store.migrations import migrate

BUDGET = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
any_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
values = st.one_of(any_text, st.integers(), st.none(), st.booleans(), st.lists(any_text, max_size=2))
records = st.lists(st.fixed_dictionaries({"text": values, "label": values}), max_size=6)


def store_once():
    folder = Path(tempfile.mkdtemp(prefix="fuzz-store-"))
    engine = make_engine(f"sqlite:///{folder / 'store.db'}")
    migrate(engine)
    return session_factory(engine)


SESSIONS = store_once()


def import_into_store(content: bytes) -> None:
    """What `switchboard import` does, in process: read, then store in one transaction."""
    with tempfile.NamedTemporaryFile(suffix=".data", delete=False) as handle:
        handle.write(content)
    with SESSIONS() as session:
        before = sorted((e.text, e.label) for e in labelled_examples(session))
    try:
        parsed = read_labelled_file(Path(handle.name))
    except UnreadableFile as exc:
        assert str(exc) and "\n" not in str(exc)
        with SESSIONS() as session:
            assert sorted((e.text, e.label) for e in labelled_examples(session)) == before
        return
    assert all(isinstance(t, str) and t and isinstance(y, str) and y for t, y in parsed.examples)
    assert all(r.line >= 1 and r.reason for r in parsed.rejected)
    with transaction(SESSIONS) as session:
        add_examples(session, examples=parsed.examples)


@BUDGET
@given(st.binary(max_size=400))
def test_any_bytes_give_rows_or_rejections_never_an_exception(content):
    import_into_store(content)


@BUDGET
@given(records)
def test_any_records_as_jsonl_json_or_csv_give_rows_or_rejections(rows):
    import_into_store("\n".join(json.dumps(r) for r in rows).encode())
    import_into_store(json.dumps(rows).encode())
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    writer.writerows([[str(r["text"]), str(r["label"])] for r in rows])
    import_into_store(out.getvalue().encode())
