import json

import pytest

from store.formats import MAX_LABEL_CHARS, UnreadableFile, read_labelled_file
from tests.support import run_cli


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8") if isinstance(content, str) else path.write_bytes(content)
    return path


@pytest.mark.parametrize(("name", "content", "fmt"), [
    ("a.csv", "text,label\nWhere is my card?,Cards\n\"Send, money\",Transfers\n", "csv"),
    ("b.csv", "text,category\nWhere is my card?,Cards\nSend money,Transfers\n", "csv"),
    ("c.jsonl", '{"text": "Where is my card?", "label": "Cards"}\n{"text": "Send money", "label": "Transfers"}\n',
     "jsonl"),
    ("d.jsonl", "\n".join(json.dumps({"messages": [
        {"role": "system", "content": "Route it."}, {"role": "user", "content": t},
        {"role": "assistant", "content": label}]}) for t, label in
        [("Where is my card?", "Cards"), ("Send money", "Transfers")]), "jsonl"),
    ("e.jsonl", '{"prompt": "Where is my card?", "completion": " Cards"}\n'
                '{"prompt": "Send money", "completion": "Transfers"}\n', "jsonl"),
    ("f.json", json.dumps([{"conversations": [{"role": "user", "content": t}, {"role": "assistant", "content": lab}]}
                           for t, lab in [("Where is my card?", "Cards"), ("Send money", "Transfers")]]), "json"),
])
def test_every_contract_format_is_read(tmp_path, name, content, fmt):
    parsed = read_labelled_file(write(tmp_path, name, content))
    assert parsed.format == fmt
    assert parsed.examples == [("Where is my card?", "Cards"), ("Send money" if fmt != "csv" or name == "b.csv"
                                                                else "Send, money", "Transfers")]
    assert parsed.rejected == []


def test_format_comes_from_the_content_not_the_name(tmp_path):
    parsed = read_labelled_file(write(tmp_path, "data.txt", '{"text": "hi there", "label": "Cards"}\n'))
    assert parsed.format == "jsonl" and parsed.examples == [("hi there", "Cards")]


def test_bad_lines_are_rejected_with_number_and_reason(tmp_path):
    lines = [
        '{"text": "good one", "label": "Cards"}',
        "this is not json",
        '{"label": "Cards"}',
        '{"text": "no label here"}',
        '{"text": "   ", "label": "Cards"}',
        json.dumps({"text": "long label", "label": "x" * (MAX_LABEL_CHARS + 1)}),
        json.dumps({"text": "y" * 1_000_000, "label": "Cards"}),
        '{"text": "good two", "label": "Transfers"}',
    ]
    parsed = read_labelled_file(write(tmp_path, "mixed.jsonl", "\n".join(lines)))
    assert parsed.examples == [("good one", "Cards"), ("good two", "Transfers")]
    reasons = {r.line: r.reason for r in parsed.rejected}
    assert reasons[2].startswith("not JSON")
    assert reasons[3] == "missing text"
    assert reasons[4] == "missing label"
    assert reasons[5] == "empty text"
    assert "over 100 characters" in reasons[6]
    assert "KiB" in reasons[7]


def test_csv_rows_with_a_huge_field_are_rejected_alone(tmp_path):
    content = "text,label\nfine,Cards\n" + '"' + "z" * 1_000_000 + '",Cards\n' + "also fine,Transfers\n"
    parsed = read_labelled_file(write(tmp_path, "big.csv", content))
    assert ("fine", "Cards") in parsed.examples and ("also fine", "Transfers") in parsed.examples
    assert len(parsed.rejected) == 1 and parsed.rejected[0].line == 3


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00binary", b"\xff\xfe\xfa not utf8", b"   \n",
                                     b"name,age\nbob,3\n", b"{not json at all\n{neither\n"])
def test_a_file_that_is_not_what_it_claims_is_unreadable(tmp_path, content):
    with pytest.raises(UnreadableFile):
        read_labelled_file(write(tmp_path, "data.csv", content))


def test_label_map_maps_and_rejects_unmapped_labels(tmp_path):
    data = write(tmp_path, "d.csv", "text,label\ncard lost,lost_card\nsend cash,transfer\nhello,greeting\n")
    parsed = read_labelled_file(data, label_map={"lost_card": "Cards", "transfer": "Transfers"})
    assert parsed.examples == [("card lost", "Cards"), ("send cash", "Transfers")]
    assert parsed.rejected[0].line == 4 and "not in the label map" in parsed.rejected[0].reason


def test_cli_import_summarises_and_a_second_import_adds_nothing(tmp_path, home):
    env = {"SWITCHBOARD_HOME": str(home)}
    data = write(tmp_path, "d.jsonl", '{"text": "card lost", "label": "Cards"}\nnot json\n'
                                      '{"text": "send cash", "label": "Transfers"}\n')
    first = run_cli("import", str(data), "--json", env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["added"], summary["duplicates"], summary["rejected"]) == (2, 0, 1)
    assert summary["rejections"] == [{"line": 2, "reason": "not JSON (Expecting value)"}]
    second = json.loads(run_cli("import", str(data), "--json", env=env).stdout)
    assert (second["added"], second["duplicates"]) == (0, 2)
    mapped = write(tmp_path, "m.json", json.dumps({"Cards": "Card Services"}))
    labels = write(tmp_path, "e.csv", "text,label\nnew card please,Cards\n")
    third = json.loads(run_cli("import", str(labels), "--label-map", str(mapped), "--json", env=env).stdout)
    assert third["new_departments"] == ["Card Services"]


def test_cli_unreadable_file_changes_nothing_and_says_one_line(tmp_path, home):
    env = {"SWITCHBOARD_HOME": str(home)}
    run_cli("import", str(write(tmp_path, "ok.csv", "text,label\nhello,Cards\n")), env=env)
    before = run_cli("export", env=env).stdout
    bad = run_cli("import", str(write(tmp_path, "bad.jsonl", b"\x00\x01\x02garbage")), env=env)
    assert bad.returncode != 0
    assert bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "binary" in bad.stderr
    missing = run_cli("import", str(tmp_path / "nope.csv"), env=env)
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1
    assert run_cli("export", env=env).stdout == before


def test_history_labels_a_message_the_bot_routed_but_nobody_labelled(sessions):
    from store.db import transaction
    from store.examples import add_examples, labelled_examples
    from store.slack import query_for_text

    with transaction(sessions) as session:
        add_examples(session, examples=[("refund my order", "Refunds")])
        query_for_text(session, text="Where is my parcel?", channel="C1", ts="1.0", user="U1", event_id="Ev1")
    with transaction(sessions) as session:
        result = add_examples(session, examples=[("where is my  parcel?", "Shipping"), ("refund my order", "Billing")])
    assert (result.added, result.duplicates, result.conflicting_duplicates) == (1, 1, 1)
    with sessions() as session:
        labelled = {e.text: e.label for e in labelled_examples(session)}
    assert labelled == {"refund my order": "Refunds", "Where is my parcel?": "Shipping"}  # stored once, labelled


@pytest.mark.parametrize("label", ["<!everyone>", "<@U123> help", "@channel billing", "#general", "Red\x1b[31m"])
def test_a_label_slack_or_a_terminal_would_misread_is_rejected_with_its_line(tmp_path, label):
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [{"text": "my card is lost", "label": "Cards"},
                                                        {"text": "ping everyone", "label": label}]))
    parsed = read_labelled_file(path)
    assert parsed.examples == [("my card is lost", "Cards")]
    assert [r.line for r in parsed.rejected] == [2] and "department name" in parsed.rejected[0].reason


@pytest.mark.parametrize(("emoji", "why"), [("::", "not a reaction name"), ("thumbsup::skin-tone-2", "skin tone"),
                                            ("Money Bag", "not a reaction name"),
                                            ("white_check_mark", "already means something")])
def test_an_emoji_the_bot_could_not_tell_apart_is_refused_and_nothing_changes(sessions, emoji, why):
    from store.db import transaction
    from store.examples import StoreError, list_departments, upsert_department

    with pytest.raises(StoreError, match=why), transaction(sessions) as session:
        upsert_department(session, name="Cards", emoji=emoji, reserved_emoji=("white_check_mark",))
    with transaction(sessions) as session:
        assert list_departments(session) == []
        assert upsert_department(session, name="Cards", emoji=":moneybag:").emoji == "moneybag"


def test_a_deeply_nested_line_or_a_nul_is_rejected_alone(tmp_path):
    path = tmp_path / "history.jsonl"
    good = json.dumps({"text": "my card is lost", "label": "Cards"})
    nul = json.dumps({"text": "x" * 9000 + "\x00 hidden", "label": "Cards"})  # past the binary sniff's 8 KB
    path.write_text("\n".join([good, "[" * 100_000 + "]" * 100_000, nul]))
    parsed = read_labelled_file(path)
    assert parsed.examples == [("my card is lost", "Cards")]
    assert [(r.line, r.reason) for r in parsed.rejected] == [(2, "JSON nested too deeply"),
                                                             (3, "text contains a NUL character")]


def test_a_database_that_refuses_the_connection_is_one_line_naming_database_url(tmp_path, home):
    """A wrong DATABASE_URL (here a port nothing listens on) is the user's to fix, not an internal error."""
    done = run_cli("status", env={"SWITCHBOARD_HOME": str(home), "DATABASE_URL": "postgresql+psycopg://"
                                  "switchboard:not-the-password@127.0.0.1:1/switchboard"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("switchboard: the store's database (DATABASE_URL) failed: connection failed")
    assert "not-the-password" not in done.stderr


def test_a_home_that_cannot_be_a_folder_is_one_line_naming_the_path(tmp_path):
    """As a volume owned by another user is (a root test process cannot be refused a write, so a file stands
    where the folder must be): the path and the reason, not an internal error."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    done = run_cli("status", env={"SWITCHBOARD_HOME": str(blocker / "home")})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"switchboard: cannot use {blocker / 'home'}") and "SWITCHBOARD_HOME" in lines[0]
