"""Personal details are replaced by typed placeholders before a text leaves for the baseline or the logs, and
with `SWITCHBOARD_REDACT=baseline+store` before it is stored or classified (core/redact.py)."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pydantic import ValidationError
from sqlmodel import select

from bot.metrics import BotMetrics
from classifier.baseline_client import make_openai_client
from classifier.serving.active_router import NoActiveModel
from cli.compose import Context, bot_deps
from cli.logs import configure_logging
from core.redact import CARD, EMAIL, IBAN, PHONE, URL, Redactor, make_redactor
from core.settings import Settings
from fakes.bot_server import BotServer
from fakes.openai_api import FakeOpenAI
from fakes.slack_api import FakeSlack
from store.db import transaction
from store.examples import add_examples, labelled_examples, upsert_department
from store.tables import Query, Split
from tests.support import DEPARTMENTS, ScriptedRouter, route, scripted_bot
from trainer.baseline import distil, score_baseline

EMAIL_ADDRESS, PHONE_NUMBER = "jane.doe+bank@example.co.uk", "+44 20 7946 0958"
CARD_NUMBER, IBAN_NUMBER = "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00"
PLANTED = (EMAIL_ADDRESS, PHONE_NUMBER, CARD_NUMBER, IBAN_NUMBER, "4111111111111111", "DE89370400440532013000",
           "7946 0958", "jane.doe")
CUSTOMER_TEXT = (f"I was charged twice on card {CARD_NUMBER}, refund to {IBAN_NUMBER} please; "
                 f"reach me at {EMAIL_ADDRESS} or {PHONE_NUMBER}")


@pytest.mark.parametrize(("text", "expected"), [
    ("write to jane.doe+bank@example.co.uk today", f"write to {EMAIL} today"),
    ("<mailto:jane@example.com|jane@example.com> wrote", f"{EMAIL} wrote"),  # Slack's link, whole
    ("call +44 20 7946 0958 or +1 415-555-2671", f"call {PHONE} or {PHONE}"),
    ("call (415) 555-2671 after 5", f"call {PHONE} after 5"),  # a national US number (the default region)
    ("card 4111 1111 1111 1111 declined", f"card {CARD} declined"),
    ("card 4111-1111-1111-1111", f"card {CARD}"),
    ("amex 378282246310005", f"amex {CARD}"),
    ("IBAN DE89 3704 0044 0532 0130 00 thanks", f"IBAN {IBAN} thanks"),
    ("GB82WEST12345698765432", IBAN),
    ("see https://bank.example/reset?token=abc.", f"see {URL}."),
    ("<https://bank.example/x|bank.example/x> is broken", f"{URL} is broken"),
])
def test_each_detector_finds_its_kind(text, expected):
    assert Redactor().text(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("カード番号は４１１１ １１１１ １１１１ １１１１です", f"カード番号は{CARD}です"),  # full-width, Japanese IME
    ("卡号４１１１１１１１１１１１１１１１，谢谢", f"卡号{CARD}，谢谢"),  # full-width, no spaces, Chinese
    ("card 4111.1111.1111.1111 declined", f"card {CARD} declined"),
    ("my card:\n4111\n1111\n1111\n1111\nthanks", f"my card:\n{CARD}\nthanks"),  # one group a line
    ("card 4111\r\n1111\r\n1111\r\n1111", f"card {CARD}"),
    ("card 4111\u200b1111\u200b1111\u200b1111 (pasted)", f"card {CARD} (pasted)"),  # zero-width spaces
    ("card 4111\u20131111\u20131111\u20131111", f"card {CARD}"),  # en dashes
    ("ref 5555 4111 1111 1111 1111", f"ref 5555 {CARD}"),  # a card after another number
    ("iban de89 3704 0044 0532 0130 00 thanks", f"iban {IBAN} thanks"),  # lower case
    ("gb82west12345698765432", IBAN),
    ("ＩＢＡＮ：ＤＥ８９ ３７０４ ００４４ ０５３２ ０１３０ ００", f"ＩＢＡＮ：{IBAN}"),  # full-width
    ("DE89 3704 0044 0532 0130 00 and GB82WEST12345698765432", f"{IBAN} and {IBAN}"),
    ("ring 020 7946 0958 after 5", f"ring {PHONE} after 5"),  # UK national form, a default region
    ("mobile 07911 123456", f"mobile {PHONE}"),
    ("電話は０２０ ７９４６ ０９５８まで", f"電話は{PHONE}まで"),
    ("call ＋４４ ２０ ７９４６ ０９５８", f"call {PHONE}"),
    ("mail ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ now", f"mail {EMAIL} now"),
])
def test_each_form_is_found_after_normalising_and_the_rest_is_kept_as_written(text, expected):
    assert Redactor().text(text) == expected


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112 declined",  # fails the Luhn check
    "IBAN DE89 3704 0044 0532 0130 01",  # fails the IBAN checksum
    "order 12345678 shipped 2024-05-01",
    "I paid 1,250.00 EUR on 12/03/2024 at 10:45",
    "transaction 555-0000 pending",  # a reserved, invalid US number
    "my PIN 1234 was blocked, account ending 6789",
    "tracking 1Z999AA10123456784",
    "why was I charged twice?",
])
def test_what_is_not_a_personal_detail_is_left_alone(text):
    assert Redactor().text(text) == text


def test_the_admins_patterns_come_first_so_a_phone_shaped_order_number_is_an_order():
    redactor = make_redactor("baseline", r"ORDER=\bORD\d{10}\b|\b4155552671\b;ACCOUNT=\bAC-\d{6}\b")
    assert Redactor().text("order 4155552671 is late") == f"order {PHONE} is late"
    assert redactor.text("order 4155552671 is late, ORD1234567890 too, account AC-123456") == (
        "order <ORDER> is late, <ORDER> too, account <ACCOUNT>")
    assert make_redactor("off").text(CUSTOMER_TEXT) == CUSTOMER_TEXT
    national_uk = "ring 020 7946 0958"
    assert make_redactor("baseline", None, "US").text(national_uk) == national_uk  # not a US number...
    assert Redactor().text(national_uk) == f"ring {PHONE}"  # ...but GB is a default region
    national_de = "ruf 030 901820 an"
    assert Redactor().text(national_de) == national_de
    assert make_redactor("baseline", None, "DE").text(national_de) == f"ruf {PHONE} an"


@pytest.mark.parametrize(("env", "message"), [
    ({"SWITCHBOARD_REDACT_PATTERNS": "ORDER=ORD-(\\d"}, "ORDER's regex does not compile"),
    ({"SWITCHBOARD_REDACT_PATTERNS": "no equals sign"}, "is not NAME=regex"),
    ({"SWITCHBOARD_REDACT_REGIONS": "US,XX"}, "unknown region XX"),
    ({"SWITCHBOARD_REDACT": "everything"}, "SWITCHBOARD_REDACT"),
])
def test_a_bad_redaction_setting_is_refused_at_start_with_its_reason(env, message):
    with pytest.raises(ValidationError, match=message):
        Settings(**env)


def leaked(fake: FakeOpenAI) -> list[str]:
    sent = json.dumps(fake.requests)
    return [detail for detail in PLANTED if detail in sent]


def test_the_baseline_never_receives_a_personal_detail_in_routing_scoring_or_distillation(home, sessions):
    with transaction(sessions) as session:
        for name, emoji, channel in DEPARTMENTS:
            upsert_department(session, name=name, emoji=emoji, channel=channel)
        add_examples(session, examples=[(f"{CUSTOMER_TEXT} ({i})", "Refunds") for i in range(12)]
                     + [(f"parcel lost, call {PHONE_NUMBER} ({i})", "Shipping") for i in range(12)]
                     + [(f"bill for {EMAIL_ADDRESS} ({i})", "Billing") for i in range(12)])

    class NoModelYet:
        model_id = None

        def classify(self, text):
            raise NoActiveModel("none")

    with FakeSlack() as slack, FakeOpenAI(lambda _text: "Refunds") as fake:
        settings = Settings(SWITCHBOARD_HOME=home, SWITCHBOARD_AUDIT_RATE="0", OPENAI_API_KEY="sk-loopback",
                            OPENAI_BASE_URL=fake.base_url)
        bot = BotServer(bot_deps(Context(settings, sessions), NoModelYet(), BotMetrics()), slack)  # the product's
        try:
            route(bot, CUSTOMER_TEXT, ts="1700000300.000100")
        finally:
            bot.close()
        routing = len(fake.requests)
        client = make_openai_client(settings.openai_api_key, settings.openai_base_url)
        with sessions() as session:
            holdout = labelled_examples(session, split=Split.HOLDOUT)
        score_baseline(client, sessions, model="gpt-4o", departments=["Billing", "Refunds", "Shipping"],
                       holdout=holdout)
        scoring = len(fake.requests) - routing
        with transaction(sessions) as session:
            session.add(Query(text=f"unlabelled: {CUSTOMER_TEXT}", text_hash="unlabelled-1"))
        distilled = distil(client, sessions, model="gpt-4o", departments=["Billing", "Refunds", "Shipping"],
                           budget_usd=1.0)
    assert routing == 1 and scoring == len(holdout) > 0 and distilled.requests >= 1
    assert leaked(fake) == []
    sent = json.dumps(fake.requests)
    assert all(placeholder in sent for placeholder in (EMAIL, PHONE, CARD, IBAN))
    with sessions() as session:  # at the default `baseline`, the store keeps what the customer wrote, but a card
        stored = CUSTOMER_TEXT.replace(CARD_NUMBER, CARD)
        assert session.exec(select(Query).where(Query.text == stored)).first() is not None


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_logs_never_carry_a_personal_detail(log_format):
    stream = io.StringIO()
    configure_logging(Settings(SWITCHBOARD_LOG_FORMAT=log_format), stream=stream)
    try:
        log = logging.getLogger("switchboard.test")
        log.info("routing %r", CUSTOMER_TEXT)
        try:
            raise ValueError(f"could not parse {CUSTOMER_TEXT}")
        except ValueError:
            log.exception("failed")
    finally:
        logging.basicConfig(force=True)
    written = stream.getvalue()
    assert [d for d in PLANTED if d in written] == []
    assert written.count(CARD) == 2 and "could not parse" in written


def test_with_store_redaction_the_model_reads_and_the_store_keeps_only_the_redacted_text(home, sessions):
    router = ScriptedRouter()
    with FakeSlack() as slack:
        bot = scripted_bot(home, sessions, slack, router=router, SWITCHBOARD_AUDIT_RATE="0",
                           SWITCHBOARD_REDACT="baseline+store")
        try:
            route(bot, CUSTOMER_TEXT, ts="1700000400.000100")
        finally:
            bot.close()
    expected = Redactor().text(CUSTOMER_TEXT)
    assert router.seen == [expected]
    with sessions() as session:
        assert [q.text for q in session.exec(select(Query))] == [expected]
