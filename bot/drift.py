"""The drift alarm: a department whose routing has gone bad is reported by the bot, not noticed late.

The stated test. The active model's holdout promised each department a misroute rate: of the
holdout messages it sent to department D, a share p0 = (wrong + 1) / (sent + 2) were not D's
(the Laplace estimate, so a perfect holdout of ten still allows some error). Live, over the last
`WINDOW` since that model was promoted, it routed n messages to D and agents' corrections or
audits have since given k of them another label. Agents correct only some misroutes, so k
undercounts the errors, which makes the test conservative. The alarm is raised when n >= 20,
k >= 5 and the exact one-sided binomial probability of k or more corrections, were p0 true, is
below 0.001. It is checked after each correction, raised once per department and model (every
replica shares the store's record), posted to SWITCHBOARD_ALERT_CHANNEL and shown on Home.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.deps import BotDeps
from store.db import transaction
from store.drift import RoutedWindow, raise_alert, routed_window
from store.registry import active_model
from store.tables import Alert, utcnow

log = logging.getLogger(__name__)

WINDOW = timedelta(days=7)
MIN_ROUTED, MIN_CORRECTED, ALPHA = 20, 5, 0.001


def promised_misroute_rate(metrics: dict[str, Any], department: str) -> float | None:
    """p0 from the model's holdout metrics; None for a model registered before they were kept."""
    held = (metrics.get("per_department") or {}).get(department)
    if held is None:
        return None
    sent = int(held["predicted"])
    wrong = round(sent * (1 - float(held["precision"])))
    return (wrong + 1) / (sent + 2)


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed exactly in log space."""
    if k <= 0:
        return 1.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
             + (n - i) * math.log1p(-p) for i in range(k, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def drifted(window: RoutedWindow, promised: float) -> float | None:
    """The test's p-value when the alarm should sound, else None."""
    if window.routed < MIN_ROUTED or window.corrected < MIN_CORRECTED:
        return None
    p_value = binomial_tail(window.corrected, window.routed, promised)
    return p_value if p_value < ALPHA else None


def check_drift(deps: BotDeps, client: WebClient, department: str) -> Alert | None:
    """After a correction of a message routed to `department`: raises and posts the alarm if it drifted."""
    with transaction(deps.sessions) as session:
        model = active_model(session)
        if model is None or model.id is None:
            return None
        promised = promised_misroute_rate(model.metrics, department)
        if promised is None:
            return None
        since = max(utcnow() - WINDOW, model.promoted_at or utcnow() - WINDOW)
        window = routed_window(session, department=department, model_id=model.id, since=since)
        p_value = drifted(window, promised)
        if p_value is None:
            return None
        alert = raise_alert(session, department=department, model_id=model.id, details={
            "routed": window.routed, "corrected": window.corrected, "promised_rate": round(promised, 4),
            "p_value": p_value, "since": since.isoformat()})
    if alert is None:
        return None
    deps.metrics.alerts.labels(department=department).inc()
    text = alarm_text(alert)
    log.warning("drift alarm: %s", text)
    if deps.rules.alert_channel:
        try:
            client.chat_postMessage(channel=deps.rules.alert_channel, text=text)
        except SlackApiError as exc:
            log.warning("could not post the drift alarm to %s: %s", deps.rules.alert_channel,
                        exc.response.get("error"))
    return alert


def alarm_text(alert: Alert) -> str:
    d = alert.details
    return (f":rotating_light: Routing to *{alert.department}* has drifted: agents corrected {d['corrected']} of the "
            f"{d['routed']} messages model {alert.model_id} sent there since {d['since'][:10]} "
            f"({d['corrected'] / d['routed']:.0%}), where its holdout promised about {d['promised_rate']:.0%} "
            f"(p = {d['p_value']:.1g}). Check recent corrections with `switchboard labels --department "
            f"\"{alert.department}\"`, then retrain or roll back.")
