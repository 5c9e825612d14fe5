"""Which customer messages agents are asked to audit: a random sample, stratified by department.

Audited labels are the only live labels that may judge models (see `store/split.py`), so the draw
must not depend on how sure the model was: every routed or triaged message is eligible, or the
holdout would hold only the model's easy cases. A department whose holdout is too small for the
gate's per-department guard is sampled at three times the rate until it has enough, so a new or
rare department becomes judgeable in weeks rather than months.

While the few-shot baseline routes (the cold start), messages are sampled at their own, higher rate
(`SWITCHBOARD_COLD_START_AUDIT_RATE`): the hand-over to a fine-tuned model waits on the holdout's
evidence more than on training data, which the baseline's uncorrected routes supply
(docs/retraining-loop.md, "The loop, measured"), and every message the baseline routes is a paid
request an earlier hand-over saves.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from classifier.routing.router import Classification

THIN_HOLDOUT = 20  # the gate judges a department from 1 / max_department_drop holdout examples (20 at 5 points)
THIN_BOOST = 3


def audit_probability(department: str | None, holdout_counts: Mapping[str, int], rate: float, *,
                      cold_start_rate: float | None = None) -> float:
    """The chance that a message routed (or, in triage, most likely to belong) to `department` is audited.

    `department` is None before any model: no stratum is known, so the message counts as thin
    while any department's holdout is (or none has one yet). `holdout_counts` should name every
    department, with 0 for those without holdout examples. `cold_start_rate`: the baseline routed
    it, and this is the cold start's rate (never below the rate otherwise drawn).
    """
    if rate <= 0:
        return 0.0
    if department is None:
        thin = not holdout_counts or min(holdout_counts.values()) < THIN_HOLDOUT
    else:
        thin = holdout_counts.get(department, 0) < THIN_HOLDOUT
    probability = min(1.0, THIN_BOOST * rate) if thin else rate
    return probability if cold_start_rate is None else max(probability, cold_start_rate)


def should_audit(rng: random.Random, result: Classification | None, holdout_counts: Mapping[str, int],
                 rate: float, *, cold_start_rate: float) -> bool:
    """Whether agents are asked to audit a message `result` routed (None: no model or baseline answered).

    The stratum is the department it went or most likely goes to; the baseline's routes are drawn at
    `cold_start_rate`. One draw from `rng`, taken whatever the probability, so that a seeded run's
    draws line up across rates.
    """
    department = result.department if result is not None else None
    cold_start = cold_start_rate if result is not None and result.from_baseline else None
    return rng.random() < audit_probability(department, holdout_counts, rate, cold_start_rate=cold_start)
