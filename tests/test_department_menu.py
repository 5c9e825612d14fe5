"""More departments than a static menu holds: the audit menu becomes an external_select whose options the bot
serves as the agent types (a `block_suggestion`), and choosing one records the audit as the static menu does.

Through the real Bolt app over HTTP with the loopback Slack and the scripted router of tests/support.py.
"""

from __future__ import annotations

import pytest

from bot.blocks import MAX_OPTIONS, OPTION_CHARS, audit_request
from bot.department_menu import matching
from store.db import transaction
from store.examples import upsert_department
from store.tables import Department, LabelSource
from tests.support import AGENT, actions, answer, label_rows, route, stored_message, text_of

MANY = [f"Dep {i:03d}" for i in range(1, 151)]  # with the three of tests/support.py, 153 departments


@pytest.fixture
def crowded(audited, sessions):
    with transaction(sessions) as session:
        for name in MANY:
            upsert_department(session, name=name)
    return audited


def menu_of(body: dict) -> dict:
    return next(e for e in actions(body) if e["action_id"] == "audit_department")


def test_past_a_hundred_departments_the_audit_menu_is_served_as_the_agent_types(crowded, sessions):
    reply = route(crowded, "charged twice", ts="40.0")
    menu = menu_of(reply)
    assert menu["type"] == "external_select" and menu["min_query_length"] in (0, 1)
    assert "options" not in menu and "initial_option" not in menu
    reply_ts = stored_message(sessions, "40.0").reply_ts

    typed = crowded.suggest("audit_department", user=AGENT, ts=reply_ts, value="Dep 14")
    # the names that start with what was typed first, then those holding each typed word
    assert [o["value"] for o in typed] == [f"Dep {i}" for i in range(140, 150)] + ["Dep 014", "Dep 114"]
    assert all(o["text"] == {"type": "plain_text", "text": o["value"]} for o in typed)
    opened = crowded.suggest("audit_department", user=AGENT, ts=reply_ts, value="")  # the menu opened, nothing typed
    assert len(opened) == MAX_OPTIONS and opened[0]["value"] == "Billing" and opened[1]["value"] == "Dep 001"
    assert crowded.suggest("audit_department", user=AGENT, ts=reply_ts, value="refunds")[0]["value"] == "Refunds"
    assert crowded.suggest("audit_department", user=AGENT, ts=reply_ts, value="no such team") == []


def test_choosing_the_120th_department_records_the_audit_and_shows_the_choice(crowded, sessions):
    route(crowded, "charged twice", ts="41.0")
    update = answer(crowded, "audit_department", user=AGENT, ts="41.0", updates=1, selected="Dep 120")
    assert "Audited by <@UAGENT1>: *Dep 120*" in text_of(update)
    assert label_rows(sessions) == [("Dep 120", LabelSource.AUDIT, AGENT, False, False)]
    menu = menu_of(update)
    assert menu["type"] == "external_select" and menu["initial_option"]["value"] == "Dep 120"


def test_the_menu_kind_follows_the_number_of_departments():
    def menu(n: int, chosen: str | None = None) -> dict:
        departments = [Department(name=f"Team {i:03d}") for i in range(n)]
        return menu_of({"blocks": audit_request(1, departments, right="Team 000", chosen=chosen)})

    static = menu(MAX_OPTIONS, chosen="Team 099")
    assert static["type"] == "static_select" and len(static["options"]) == MAX_OPTIONS
    assert static["initial_option"]["value"] == "Team 099"
    served = menu(MAX_OPTIONS + 1, chosen="Team 100")
    assert served["type"] == "external_select" and "options" not in served
    assert served["initial_option"] == {"text": {"type": "plain_text", "text": "Team 100"}, "value": "Team 100"}
    assert "initial_option" not in menu(MAX_OPTIONS + 1, chosen="Gone")  # a department deleted since


def test_matching_ranks_the_exact_name_then_prefixes_and_caps_the_answer():
    names = ["Billing Disputes", "Billing", "Card Billing", "Cards", *(f"Queue {i:03d}" for i in range(150))]
    assert [o["value"] for o in matching(names, "BILLING")] == ["Billing", "Billing Disputes", "Card Billing"]
    assert [o["value"] for o in matching(names, "disputes billing")] == ["Billing Disputes"]  # every word, any order
    assert len(matching(names, "queue")) == MAX_OPTIONS and len(matching(names, "")) == MAX_OPTIONS
    long = "A department with a very long name " * 3
    [shown] = matching([long.strip()], "very long")
    assert len(shown["text"]["text"]) == OPTION_CHARS and shown["value"] == long.strip()
