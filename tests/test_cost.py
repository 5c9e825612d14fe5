"""What routing costs: measured tokens and latencies priced per 1,000 queries, the year's projection,
`switchboard cost`, who routes in `status`, and the Home tab's cost line and chart."""

from __future__ import annotations

import json
import math
import struct
from datetime import timedelta
from itertools import count
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError

from bot.deps import BotDeps
from bot.home import HomeTab
from bot.rules import BotRules
from core.settings import Settings
from reports.costs import DAYS, Pricing, project
from store.costs import cost_measures, usd
from store.db import transaction
from store.overview import status, status_lines
from store.registry import promote, register_model
from store.tables import BaselinePrediction, Prediction, Query, SlackMessage, utcnow
from tests.support import run_cli

PNG = b"\x89PNG\r\n\x1a\n"
_ids = count()
# gpt-4o at $2.50 / $10 per million tokens; mean 500 prompt + 20 completion tokens over the three requests below
GPT4O_PER_1000 = (500 * 1000 * 2.50 + 20 * 1000 * 10.00) / 1_000_000  # 1.45
MEDIAN_MS = 25.0  # of the fine-tuned router's 10, 40, 20, 30 ms
ROUTER_PER_1000 = 0.10 / (3_600_000 / MEDIAN_MS) * 1000  # the default host price, $0.10 an hour


def _query(session: Any) -> int:
    n = next(_ids)
    query = Query(text=f"question {n}", text_hash=f"hash-{n}")
    session.add(query)
    session.flush()
    assert query.id is not None
    return query.id


def _model(session: Any, *, active: bool = False) -> int:
    model = register_model(session, adapter_path="a", base_model="b", labels=["Billing"], hyperparameters={},
                           metrics={"macro_f1": 0.8}, parent_id=None)
    assert model.id is not None
    if active:
        promote(session, model_id=model.id)
    return model.id


def seed(sessions: Any, *, recent_messages: int = 14) -> int:
    """The measures every test starts from; returns the (inactive) model that routed."""
    with transaction(sessions) as session:
        model_id = _model(session)
        for prompt, completion in ((400, 10), (600, 30)):
            session.add(BaselinePrediction(query_id=_query(session), prompt_version="v1", model="gpt-4o",
                                           department="Billing", prompt_tokens=prompt, completion_tokens=completion))
        session.add(BaselinePrediction(query_id=_query(session), prompt_version="v1", model="gpt-4o-mini",
                                       department="Billing", prompt_tokens=9000, completion_tokens=900))
        session.add(Prediction(query_id=_query(session), department="Billing", confidence=0.9, scores={},
                               latency_ms=900.0, baseline_model="gpt-4o", prompt_tokens=500, completion_tokens=20))
        for latency in (10.0, 40.0, 20.0, 30.0):
            session.add(Prediction(query_id=_query(session), model_version_id=model_id, department="Billing",
                                   confidence=0.9, scores={}, latency_ms=latency))
        now = utcnow()
        for i in range(recent_messages + 5):  # five of them older than the week that sets the volume
            age = timedelta(hours=i) if i < recent_messages else timedelta(days=8 + i)
            session.add(SlackMessage(channel="C", ts=f"{i}.0", query_id=_query(session), created_at=now - age))
    return model_id


def test_per_1000_figures_come_from_the_measured_tokens_and_latency(sessions):
    seed(sessions)
    with sessions() as session:
        measures = cost_measures(session)
    usage = measures.baseline["gpt-4o"]
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (3, 500, 20)
    assert measures.baseline["gpt-4o-mini"].requests == 1  # each model apart
    assert measures.median_latency_ms == MEDIAN_MS and measures.router_queries == 4  # the baseline's 900 ms left out
    assert measures.volume_per_day == 2.0  # 14 messages in the last 7 days

    summary = Pricing("gpt-4o", 0.10).summarize(measures)
    assert summary.baseline is not None and summary.baseline.per_1000_usd == pytest.approx(GPT4O_PER_1000)
    assert summary.router.queries_per_hour == 144_000
    assert summary.router.per_1000_usd == pytest.approx(ROUTER_PER_1000, abs=1e-6)
    assert Pricing("gpt-4o", 0.50).router(measures).per_1000_usd == pytest.approx(5 * ROUTER_PER_1000, abs=1e-6)

    with transaction(sessions) as session:  # tokens measured, but no list price to put on them
        session.add(BaselinePrediction(query_id=_query(session), prompt_version="v1", model="local-llm",
                                       department="Billing", prompt_tokens=100, completion_tokens=5))
    with sessions() as session:
        unknown = Pricing("local-llm", 0.10).baseline(cost_measures(session))
    assert unknown is not None and unknown.usage is not None and unknown.per_1000_usd is None
    assert unknown.note == "no list price known for local-llm"
    assert Pricing(None, 0.10).summarize(measures).baseline is None


def test_the_projection_compounds_one_percent_a_day_and_adds_hosts_as_volume_grows():
    year = project(1000, baseline_per_1000=2.0, host_usd_per_hour=1.0, queries_per_hour=50)  # 1,200 per host-day
    assert year.baseline_daily is not None and year.router_daily is not None and len(year.baseline_daily) == DAYS
    assert year.baseline_daily[0] == 2.0 and year.baseline_daily[1] == pytest.approx(2.0 * 1.01)
    assert year.baseline_daily[-1] == pytest.approx(2.0 * 1.01 ** 364)
    assert year.baseline_usd == pytest.approx(2.0 * (1.01 ** 365 - 1) / 0.01, abs=0.01)
    assert year.router_daily[18] == 24.0  # 1,196 queries: one host all day
    assert year.router_daily[19] == 48.0  # 1,208 queries: two
    assert year.router_hosts_max == math.ceil(1000 * 1.01 ** 364 / 1200)
    assert year.router_usd == pytest.approx(sum(24 * math.ceil(1000 * 1.01 ** d / 1200) for d in range(DAYS)))

    unmeasured = project(1000, baseline_per_1000=None, host_usd_per_hour=1.0, queries_per_hour=None)
    assert unmeasured.baseline_usd is None and unmeasured.router_usd is None


def test_no_traffic_is_said_and_costs_only_the_idle_host(sessions):
    with sessions() as session:
        summary = Pricing("gpt-4o", 0.10).summarize(cost_measures(session))
    assert summary.baseline is not None and summary.baseline.per_1000_usd is None
    assert "no gpt-4o request measured" in (summary.baseline.note or "")
    assert summary.router.per_1000_usd is None and not summary.chartable
    assert "no customer messages" in (summary.projection.note or "")

    idle = project(0, baseline_per_1000=1.45, host_usd_per_hour=0.10, queries_per_hour=144_000)
    assert idle.baseline_usd == 0 and idle.router_usd == pytest.approx(365 * 24 * 0.10) and idle.note


def test_status_says_who_routes_and_what_it_costs(sessions):
    model_id = seed(sessions)
    with sessions() as session:
        triage = status(session, pricing=Pricing(None, 0.10))
        baseline = status(session, pricing=Pricing("gpt-4o", 0.10))
    assert triage["routing"]["kind"] == "triage"
    assert "routing: triage (no model is active and no baseline is configured)" in status_lines(triage)
    assert baseline["routing"] == {"kind": "baseline", "model": "gpt-4o", "cost_per_1000_usd": GPT4O_PER_1000}
    assert "routing: baseline gpt-4o ($1.45 per 1,000 queries) until a fine-tuned model beats it" in \
        status_lines(baseline)

    with transaction(sessions) as session:
        promote(session, model_id=model_id)
    with sessions() as session:
        routed = status(session, pricing=Pricing("gpt-4o", 0.10))
    assert routed["routing"]["kind"] == "model" and routed["routing"]["id"] == model_id
    assert routed["routing"]["cost_per_1000_usd"] == pytest.approx(ROUTER_PER_1000, abs=1e-6)
    assert f"routing: model {model_id} ($0.00069 per 1,000 queries)" in status_lines(routed)
    assert routed["active_model"]["id"] == model_id and {"examples", "training", "last_run"} <= routed.keys()


def test_an_unmeasured_cost_is_said_never_invented(sessions):
    with transaction(sessions) as session:
        model_id = _model(session, active=True)
    with sessions() as session:
        payload = status(session, pricing=Pricing("gpt-4o", 0.10))
    assert payload["routing"]["cost_per_1000_usd"] is None
    assert f"routing: model {model_id} (cost unknown: the fine-tuned router has not routed a query yet)" in \
        status_lines(payload)


def test_usd_keeps_two_significant_digits_below_a_cent():
    assert (usd(1.45), usd(1234.5), usd(0.000694), usd(0), usd(None)) == ("$1.45", "$1,234.50", "$0.00069", "$0.00",
                                                                         "unknown")


def test_switchboard_cost_with_and_without_a_baseline(sessions, home, tmp_path, database_url):
    seed(sessions)
    env = {"SWITCHBOARD_HOME": str(home), "SWITCHBOARD_HOST_USD_PER_HOUR": "0.5", "DATABASE_URL": database_url}
    chart = tmp_path / "cost.png"
    done = run_cli("cost", "--json", "--png", str(chart), env=env | {"OPENAI_API_KEY": "sk-test"})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["baseline"]["model"] == "gpt-4o" and out["baseline"]["measured_requests"] == 3
    assert out["baseline"]["tokens_per_query"] == 520 and out["baseline"]["cost_per_1000_usd"] == GPT4O_PER_1000
    assert out["router"] == {"cost_per_1000_usd": pytest.approx(5 * ROUTER_PER_1000, abs=1e-6),
                             "host_usd_per_hour": 0.5, "median_latency_ms": MEDIAN_MS, "queries_per_hour": 144_000,
                             "note": None}
    assert out["volume_per_day"] == 2.0 and out["png"] == str(chart)
    projection = out["projection"]
    assert (projection["days"], projection["daily_growth"]) == (365, 0.01)
    assert projection["baseline_usd"] == pytest.approx(2.0 * (1.01 ** 365 - 1) / 0.01 * GPT4O_PER_1000 / 1000, abs=0.01)
    assert projection["router_usd"] == pytest.approx(365 * 24 * 0.5)  # one host is enough all year
    assert chart.read_bytes().startswith(PNG)

    without = run_cli("cost", env=env)
    assert without.returncode == 0, without.stderr
    assert "baseline: not configured" in without.stdout and "fine-tuned router: $0.0035 per 1,000" in without.stdout
    assert json.loads(run_cli("cost", "--json", env=env).stdout)["baseline"] is None


def test_switchboard_cost_on_an_empty_store(home, tmp_path):
    env = {"SWITCHBOARD_HOME": str(home), "OPENAI_API_KEY": "sk-test"}
    out = json.loads(run_cli("cost", "--json", env=env).stdout)
    assert out["baseline"]["cost_per_1000_usd"] is None and out["router"]["cost_per_1000_usd"] is None
    assert out["volume_per_day"] == 0 and out["projection"]["baseline_usd"] is None
    assert "no customer messages" in out["projection"]["note"]
    refused = run_cli("cost", "--png", str(tmp_path / "c.png"), env=env)
    assert refused.returncode == 2 and refused.stderr.strip() == \
        "switchboard: nothing to chart yet: no baseline cost and no router latency measured"
    assert not (tmp_path / "c.png").exists()


class StubSlack:
    """Records uploads and published views; refuses the next `refuse` views that show an image."""

    def __init__(self) -> None:
        self.uploads: list[bytes] = []
        self.views: list[dict[str, Any]] = []
        self.refuse = 0

    def files_upload_v2(self, *, content: bytes, filename: str, title: str) -> dict[str, Any]:
        self.uploads.append(content)
        return {"file": {"id": f"F{len(self.uploads)}"}}

    def views_publish(self, *, user_id: str, view: dict[str, Any]) -> None:
        if self.refuse and any(b["type"] == "image" for b in view["blocks"]):
            self.refuse -= 1
            raise SlackApiError("refused", {"ok": False, "error": "invalid_blocks"})
        self.views.append(view)


def _shown(view: dict[str, Any]) -> tuple[str, list[str]]:
    text = " ".join(b["text"]["text"] for b in view["blocks"] if b["type"] == "section")
    return text, [b["slack_file"]["id"] for b in view["blocks"] if b["type"] == "image"]


def _width(png: bytes) -> int:
    return int(struct.unpack(">I", png[16:20])[0])


def test_the_home_tab_says_who_routes_and_shows_the_cost_chart(sessions, home):
    model_id = seed(sessions)
    settings = Settings(SWITCHBOARD_HOME=home, OPENAI_API_KEY="sk-test")
    tab = HomeTab(BotDeps(rules=BotRules.of(settings), sessions=sessions, router=None))  # type: ignore[arg-type]
    slack = StubSlack()
    slack.refuse = 1  # Slack has not finished processing the upload
    tab.publish(slack, "U1")  # type: ignore[arg-type]
    text, images = _shown(slack.views[-1])
    assert images == []  # published without the chart rather than not at all
    assert "*Routing*: baseline gpt-4o ($1.45 per 1,000 queries) until a fine-tuned model beats it" in text
    assert "fine-tuned router $0.00069" in text and "gpt-4o few-shot baseline: $1.45" in text
    baseline_year = 2 * (1.01 ** 365 - 1) / 0.01 * GPT4O_PER_1000 / 1000
    assert f"Over a year from about 2 queries a day, +1% a day: baseline {usd(baseline_year)}, router $876.00." in text

    tab.publish(slack, "U1")  # type: ignore[arg-type]
    assert _shown(slack.views[-1])[1] == ["F1"] and len(slack.uploads) == 1  # the same chart, not uploaded again
    assert slack.uploads[0].startswith(PNG) and _width(slack.uploads[0]) == 550  # the cost alone: no promotion yet

    with transaction(sessions) as session:
        promote(session, model_id=model_id)
    tab.publish(slack, "U1")  # type: ignore[arg-type]
    text, images = _shown(slack.views[-1])
    assert images == ["F2"] and _width(slack.uploads[1]) == 1100  # F1 across promotions beside the cost
    assert f"*Routing*: model {model_id} ($0.00069 per 1,000 queries)" in text



def test_baseline_reset_forgets_the_kept_shots(sessions, home, database_url):
    from store.db import transaction
    from store.examples import add_examples
    from store.shots import ensure_shots
    from tests.support import run_cli

    with transaction(sessions) as session:
        add_examples(session, examples=[(f"charge {i}", "Billing") for i in range(6)])
        assert len(ensure_shots(session, departments=["Billing"])) == 3
    done = run_cli("baseline", "reset", "--json", env={"SWITCHBOARD_HOME": str(home), "DATABASE_URL": database_url})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"shots_removed": 3}
