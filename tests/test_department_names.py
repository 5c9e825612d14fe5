"""A new department whose name looks like one already there (TR39 look-alike fold) is refused on every path."""

import json

import pytest

from core.lookalike import fold
from store.db import transaction
from store.examples import StoreError, add_examples, list_departments, upsert_department
from tests.support import run_cli

CYRILLIC_I = "B\u0456lling"  # "Bіlling": CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I for the Latin i


@pytest.mark.parametrize(("one", "other"), [
    ("Billing", CYRILLIC_I),
    ("Billing", "billing"),
    ("Billing", "ＢＩＬＬＩＮＧ"),  # fullwidth
    ("Paypal", "\u0420\u0430\u0443\u0440\u0430l"),  # Cyrillic Р, а, у
    ("Support", "Supp\u03bfrt"),  # Greek omicron
    ("Returns", "Retu\u0433ns"),  # Cyrillic г for r
    ("Modem", "rnodern"),  # TR39's own: m looks like rn
    ("Card  Services", "Card Services"),
])
def test_look_alikes_fold_alike(one, other):
    assert fold(one) == fold(other)


@pytest.mark.parametrize(("one", "other"), [("Billing", "Biling"), ("Sales", "Scales"), ("Accounts", "Account"),
                                            ("Cards", "Carts")])
def test_different_names_fold_apart(one, other):
    assert fold(one) != fold(other)


def test_a_look_alike_is_refused_by_the_store_and_nothing_changes(sessions):
    with transaction(sessions) as session:
        upsert_department(session, name="Billing", emoji="moneybag")
    for look_alike in (CYRILLIC_I, "billing", "BILLING"):
        with pytest.raises(StoreError) as refused, transaction(sessions) as session:
            upsert_department(session, name=look_alike, emoji="credit_card", channel="C1")
        message = str(refused.value)
        assert "'Billing'" in message and "looks like" in message and "\n" not in message
    with sessions() as session:
        assert [(d.name, d.emoji, d.channel) for d in list_departments(session)] == [("Billing", "moneybag", None)]


def test_the_refusal_names_the_odd_letter(sessions):
    with transaction(sessions) as session:
        upsert_department(session, name="Billing")
    with pytest.raises(StoreError, match="CYRILLIC SMALL LETTER"), transaction(sessions) as session:
        upsert_department(session, name=CYRILLIC_I)


def test_the_same_name_updates_and_a_different_name_is_added(sessions):
    with transaction(sessions) as session:
        upsert_department(session, name="Billing", emoji="moneybag")
    with transaction(sessions) as session:
        assert upsert_department(session, name="Billing", channel="C42").emoji == "moneybag"
        upsert_department(session, name="Biling Disputes")
    with sessions() as session:
        assert [(d.name, d.channel) for d in list_departments(session)] == [("Biling Disputes", None),
                                                                             ("Billing", "C42")]


def test_the_reserved_class_has_no_look_alike(sessions):
    with pytest.raises(StoreError, match="reserved"), transaction(sessions) as session:
        upsert_department(session, name="n\u043ene of these")  # Cyrillic о


def test_an_import_whose_label_looks_like_a_department_is_refused_whole(sessions):
    with transaction(sessions) as session:
        add_examples(session, examples=[("my invoice is wrong", "Billing")])
    with pytest.raises(StoreError, match="looks like the existing department 'Billing'"), \
            transaction(sessions) as session:
        add_examples(session, examples=[("where is my parcel", "Shipping"), ("refund me", CYRILLIC_I)])
    with sessions() as session:
        assert [d.name for d in list_departments(session)] == ["Billing"]


def test_the_cli_refuses_a_look_alike_in_one_line(tmp_path, home):
    env = {"SWITCHBOARD_HOME": str(home)}
    added = run_cli("departments", "add", "Billing", "--emoji", "moneybag", env=env)
    assert added.returncode == 0, added.stderr
    refused = run_cli("departments", "add", CYRILLIC_I, "--emoji", "credit_card", env=env)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "looks like the existing department 'Billing'" in refused.stderr
    data = tmp_path / "more.csv"
    data.write_text(f"text,label\nwhere is my parcel,Shipping\nrefund me please,{CYRILLIC_I}\n", encoding="utf-8")
    imported = run_cli("import", str(data), env=env)
    assert imported.returncode != 0 and "looks like the existing department 'Billing'" in imported.stderr
    updated = run_cli("departments", "add", "Billing", "--channel", "C42", env=env)
    assert updated.returncode == 0, updated.stderr
    different = run_cli("departments", "add", "Shipping", env=env)
    assert different.returncode == 0, different.stderr
    listed = json.loads(run_cli("departments", "--json", env=env).stdout)["departments"]
    assert [(d["name"], d["emoji"], d["channel"]) for d in listed] == [("Billing", "moneybag", "C42"),
                                                                       ("Shipping", None, None)]
