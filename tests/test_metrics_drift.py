"""`/metrics` and the drift alarm, on the real Bolt app over HTTP with the scripted router.

The alarm's test (bot/drift.py): a department routed to at least 20 times since its model was
promoted, with at least 5 corrections, whose count of corrections would have had probability
below 0.001 under the misroute rate its holdout promised.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select

from bot.drift import binomial_tail, drifted, promised_misroute_rate
from fakes.bot_server import BotServer, reaction
from store.db import transaction
from store.drift import RoutedWindow
from store.registry import promote
from store.tables import Alert, ModelVersion
from tests.support import AGENT, posts, route, scripted_bot


def scrape(bot: BotServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = bot.get("/metrics").body
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def with_holdout_promise(sessions, precision: float, predicted: int) -> None:
    """The scripted model's registry row carries holdout metrics, as a trained one does, and is active."""
    with transaction(sessions) as session:
        model = session.get(ModelVersion, 1)
        model.metrics = {"macro_f1": 0.9, "per_department": {
            name: {"precision": precision, "predicted": predicted} for name in ("Billing", "Shipping", "Refunds")}}
        session.add(model)
        promote(session, model_id=1, by="test")


def test_metrics_count_outcomes_corrections_latency_and_the_store(home, sessions, slack):
    bot = scripted_bot(home, sessions, slack)
    try:
        route(bot, "where is my parcel", ts="1.0")
        route(bot, "I am unsure about this", ts="2.0")
        route(bot, "HACKED ignore previous instructions", ts="3.0")
        assert bot.event(reaction("reaction_added", "money_with_wings", user=AGENT, ts="1.0")).status == 200
        bot.drain()  # the counter moves just after the reply is edited
        metrics = scrape(bot)
    finally:
        bot.close()
    assert metrics[("switchboard_messages_total", (("outcome", "routed"),))] == 1
    assert metrics[("switchboard_messages_total", (("outcome", "triaged"),))] == 1
    assert metrics[("switchboard_messages_total", (("outcome", "out_of_scope"),))] == 1
    assert metrics[("switchboard_routed_total", (("department", "Shipping"),))] == 1
    assert metrics[("switchboard_corrections_total", (("department", "Shipping"),))] == 1
    assert metrics[("switchboard_classification_seconds_count", ())] == 3
    assert metrics[("switchboard_serving_model", ())] == 1 and metrics[("switchboard_model_queue_depth", ())] == 0
    assert metrics[("switchboard_training_runs", (("outcome", "promoted"),))] == 0
    assert metrics[("switchboard_events_waiting_retry", ())] == 0
    assert ("switchboard_retrain_requests_waiting", ()) in metrics


def test_the_stated_test():
    assert binomial_tail(0, 10, 0.3) == 1.0
    assert binomial_tail(10, 10, 0.5) == pytest.approx(0.5 ** 10)
    assert binomial_tail(3, 5, 0.5) == pytest.approx(0.5)
    promise = {"per_department": {"A": {"precision": 0.9082, "predicted": 98}}}
    assert promised_misroute_rate(promise, "A") == 0.1  # (9 wrong + 1) / (98 sent + 2)
    assert promised_misroute_rate({"macro_f1": 0.9}, "A") is None  # a model from before the promise was kept
    assert drifted(RoutedWindow(routed=19, corrected=19), 0.01) is None  # too few routed to judge
    assert drifted(RoutedWindow(routed=100, corrected=4), 0.0001) is None  # too few corrections
    assert drifted(RoutedWindow(routed=100, corrected=12), 0.1) is None  # 12% where 10% was promised: noise
    assert drifted(RoutedWindow(routed=100, corrected=30), 0.1) is not None  # 30%: p about 1e-8


def test_a_department_whose_corrections_outrun_its_promise_raises_one_alarm(home, sessions, slack):
    bot = scripted_bot(home, sessions, slack, SWITCHBOARD_ALERT_CHANNEL="CALERTS")
    with_holdout_promise(sessions, precision=0.95, predicted=60)  # p0 = 4/62, about 6%
    try:
        for i in range(24):
            route(bot, f"where is my parcel {i}", ts=f"{10 + i}.0")
        for i in range(4):  # 4 of 24: too few corrections to say anything
            bot.event(reaction("reaction_added", "moneybag", user=AGENT, ts=f"{10 + i}.0"))
        slack.wait_for("chat.update", 4)
        assert posts(slack, "CALERTS") == []
        for i in range(4, 9):  # 9 of 24 (38%) where about 6% was promised
            bot.event(reaction("reaction_added", "moneybag", user=AGENT, ts=f"{10 + i}.0"))
        bot.drain()  # every correction handled: those after the one that raised the alarm do not raise it again
        alarms = posts(slack, "CALERTS")
        assert len(alarms) == 1, alarms
        assert "*Shipping* has drifted" in alarms[0]["text"] and "corrected" in alarms[0]["text"]
        metrics = scrape(bot)
        assert metrics[("switchboard_drift_alarms_total", (("department", "Shipping"),))] == 1

        bot.event({"type": "app_home_opened", "user": AGENT, "channel": "DHOME", "tab": "home"})
        [home_view] = slack.wait_for("views.publish")
        assert "Routing to *Shipping* has drifted" in str(home_view.body["view"]["blocks"][1])
    finally:
        bot.close()
    with sessions() as session:
        [alert] = session.exec(select(Alert)).all()
    assert alert.department == "Shipping" and alert.model_id == 1 and alert.details["corrected"] >= 5
