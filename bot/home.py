"""The App Home tab: who routes and what it costs, the active model against the baseline, F1 across
promotions beside the year's cost projection, labels, runs, departments.

The charts are one PNG (Block Kit cannot put two images side by side) uploaded to Slack once per
distinct content and shown by file id: Slack only displays images it can fetch, and in Socket Mode
the bot has no public URL of its own.
"""

from __future__ import annotations

import io
import logging
import threading
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.deps import BotDeps
from bot.drift import alarm_text
from reports.cost_chart import coarse, plot_projection
from reports.costs import DAILY_GROWTH, CostSummary, Projection
from store.costs import cost_measures, usd
from store.drift import recent_alerts
from store.examples import list_departments
from store.overview import (
    candidate_text,
    f1_text,
    labels_per_department,
    promotion_history,
    recent_runs,
    routing_text,
    status,
)
from store.run_report import verdict_line
from store.tables import Alert

log = logging.getLogger(__name__)


class HomeTab:
    def __init__(self, deps: BotDeps) -> None:
        self._deps = deps
        self._chart_files: dict[tuple[Any, ...], str] = {}
        self._lock = threading.Lock()

    def publish(self, client: WebClient, user: str) -> None:
        pricing = self._deps.rules.pricing
        with self._deps.sessions() as session:
            summary = status(session, pricing=pricing)
            costs = pricing.summarize(cost_measures(session))
            history = promotion_history(session)
            labels = labels_per_department(session)
            runs = recent_runs(session)
            departments = list_departments(session)
            alerts = recent_alerts(session)
        drawn = coarse(costs)  # the year's figures as the chart shows them
        top = [_header("Switchboard"), *_alert_blocks(alerts), *_model_blocks(summary, history),
               _text(_cost_lines(costs, drawn.projection))]
        rest = [_header("Labels per department"), _text(_label_lines(labels)),
                _header("Last runs"), _text(_run_lines(runs)),
                _header("Departments"), _text(_department_lines(departments))]
        chart = self._chart_file(client, history, drawn if drawn.chartable else None)
        if chart:
            image = {"type": "image", "slack_file": {"id": chart},
                     "alt_text": _alt_text(history, drawn if drawn.chartable else None)}
            try:
                client.views_publish(user_id=user, view={"type": "home", "blocks": [*top, image, *rest]})
                return
            except SlackApiError as exc:
                # Slack processes uploads asynchronously: a file id used at once can be refused as
                # invalid_blocks. The tab goes out without the chart; the next opening shows it.
                log.warning("home tab chart refused (%s); publishing without it", exc.response.get("error"))
        client.views_publish(user_id=user, view={"type": "home", "blocks": [*top, *rest]})

    def _chart_file(self, client: WebClient, history: list[dict[str, Any]], costs: CostSummary | None) -> str | None:
        points = tuple((h["model_id"], h["macro_f1"], h["baseline_macro_f1"]) for h in history)
        drawn = None if costs is None else (costs.baseline.model if costs.baseline else None,
                                            costs.projection.volume_per_day, costs.projection.baseline_usd,
                                            costs.projection.router_usd)
        if not points and drawn is None:
            return None
        key = (points, drawn)
        with self._lock:
            if key not in self._chart_files:
                try:
                    upload = client.files_upload_v2(content=home_chart_png(history, costs), filename="switchboard.png",
                                                    title="Holdout macro-F1 across promotions, cost over a year")
                    self._chart_files[key] = upload["file"]["id"]
                except SlackApiError as exc:
                    log.warning("could not upload the Home chart: %s", exc.response.get("error"))
                    return None
            return self._chart_files[key]


def home_chart_png(history: list[dict[str, Any]], costs: CostSummary | None) -> bytes:
    """F1 across promotions (when a model was ever promoted) beside the year's cost (when a cost is known)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = int(bool(history)) + int(costs is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.2), dpi=100, squeeze=False)
    if history:
        _plot_f1(axes[0][0], history)
    if costs is not None:
        plot_projection(axes[0][-1], costs)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _plot_f1(ax: Any, history: list[dict[str, Any]]) -> None:
    xs = list(range(1, len(history) + 1))
    ax.plot(xs, [h["macro_f1"] or 0 for h in history], marker="o", label="promoted model")
    baseline = [(x, h["baseline_macro_f1"]) for x, h in zip(xs, history, strict=True) if h["baseline_macro_f1"]]
    if baseline:
        ax.plot(*zip(*baseline, strict=True), marker="x", linestyle="--", label="GPT-4o baseline")
    ax.set_xticks(xs, [f"#{h['model_id']}" for h in history])
    ax.set_ylim(0, 1)
    ax.set_ylabel("holdout macro-F1")
    ax.legend(loc="lower right", fontsize=8)


def _alt_text(history: list[dict[str, Any]], costs: CostSummary | None) -> str:
    parts = ["Holdout macro-F1 of each promoted model, with the GPT-4o baseline on the same holdout"] if history else []
    if costs is not None:
        parts.append(f"cumulative cost over a year at +{DAILY_GROWTH:.0%} a day")
    return "; ".join(parts)


def _cost_lines(costs: CostSummary, projection: Projection) -> str:
    """Both routers' cost per 1,000 queries, and the year's projection (the chart's) at the current volume."""
    router, baseline = costs.router, costs.baseline
    lines = ["*Cost per 1,000 queries*: fine-tuned router " + (
        f"{usd(router.per_1000_usd)} (host {usd(router.host_usd_per_hour)}/hour, median "
        f"{router.median_latency_ms:,.0f} ms a query)" if router.per_1000_usd is not None and router.median_latency_ms
        else f"unknown ({router.note})")]
    if baseline is None:
        lines.append("Few-shot baseline: not configured.")
    elif baseline.per_1000_usd is None:
        lines.append(f"{baseline.model} few-shot baseline: unknown ({baseline.note}).")
    else:
        requests = baseline.usage.requests if baseline.usage else 0
        lines.append(f"{baseline.model} few-shot baseline: {usd(baseline.per_1000_usd)} "
                     f"(tokens measured on {requests:,} requests).")
    totals = [f"{name} {usd(total)}" for name, total in (("baseline", projection.baseline_usd),
                                                        ("router", projection.router_usd)) if total is not None]
    if totals:
        volume = projection.volume_per_day
        lines.append(f"Over a year from about {f'{volume:,.0f}' if volume >= 10 else f'{volume:.2g}'} queries a day, "
                     f"+{DAILY_GROWTH:.0%} a day: " + ", ".join(totals) + ".")
    if projection.note:
        lines.append(projection.note[0].upper() + projection.note[1:] + ".")
    return "\n".join(lines)


def _alert_blocks(alerts: list[Alert]) -> list[dict[str, Any]]:
    """The latest drift alarms, first on the tab: each is raised once and stays until newer ones push it out."""
    return [_text(f"{alarm_text(a)} _(raised {a.raised_at:%Y-%m-%d %H:%M} UTC)_") for a in alerts[:3]]


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


def _text(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _model_blocks(summary: dict[str, Any], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    model, examples = summary["active_model"], summary["examples"]
    if model is None:
        head = "*No model is active yet.* An admin runs `/switchboard retrain` once labelled examples are in."
    else:
        baseline = model.get("baseline_macro_f1")
        head = (f"*Active model {model['id']}*: holdout macro-F1 *{f1_text(model['macro_f1'])}*, "
                + (f"GPT-4o baseline {baseline:.3f} on the same holdout" if baseline is not None
                   else "baseline: not configured"))
    across = " → ".join(f"#{h['model_id']} {h['macro_f1'] or 0:.3f}" for h in history[-8:])
    lines = [head, f"*Routing*: {routing_text(summary['routing'])}"]
    if across:
        lines.append(f"Holdout macro-F1 across promotions: {across}")
    lines.append(f"Examples: {examples['train']} train, {examples['holdout']} holdout; "
                 f"{examples['pending']} labelled since the last run.")
    if summary.get("candidate"):
        lines.append(":eyes: " + candidate_text(summary["candidate"]).replace("candidate: ", "Candidate ", 1))
    if summary["training"]:
        lines.append(":hourglass_flowing_sand: A retraining run is in progress.")
    body = "\n".join(lines)
    return [_text(body)]


def _label_lines(labels: dict[str, Any]) -> str:
    rows = [f"• *{name}*: {sum(by_source.values())}"
            + (f" ({', '.join(f'{n} {src}' for src, n in sorted(by_source.items()))})" if by_source else "")
            for name, by_source in sorted(labels.items())]
    return "\n".join(rows) or "No labels yet."


def _run_lines(runs: list[Any]) -> str:
    rows = [f"• Run {r.id} ({r.trigger}, {r.finished_at:%Y-%m-%d %H:%M} UTC): "
            + verdict_line(r.status.value, r.reason or "")
            for r in runs if r.finished_at]
    return "\n".join(rows) or "No runs yet."


def _department_lines(departments: list[Any]) -> str:
    rows = [f"• {':' + d.emoji + ':' if d.emoji else '(no emoji)'} *{d.name}*"
            + (f" → <#{d.channel}>" if d.channel else "") for d in departments]
    return "\n".join(rows) or "No departments yet."
