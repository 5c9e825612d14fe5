"""The admins' approval request: each department's F1, the candidate's beside the active model's, on the holdout
and on the shadow window's audited messages (with how many), and customers' words quoted without firing."""

from __future__ import annotations

from sqlmodel import select

from core.mrkdwn import escape, quote
from core.redact import Redactor
from store.db import transaction
from store.examples import add_examples
from store.registry import get_model, promote, register_model
from store.run_report import ModelScore, RunReport
from store.runs import finish_run, start_run
from store.shadow import ShadowRow, await_approval, start_pending
from store.tables import ModelStatus, Query, RunStatus
from trainer.approval import SECTION_CHARS, approval_message
from trainer.promotion import shadow_evidence

LOUD = "<!channel> refund me NOW & tell <@U0BOSS> <https://evil.example|your bank>"
TEXTS = {"b1": "invoice wrong", "b2": "charged twice", "b3": "payment failed", "b4": "card declined",
         "r1": LOUD, "r2": "refund for the jacket\n<!here> second line"}
TRUTH = {"b1": "Billing", "b2": "Billing", "b3": "Billing", "b4": "Billing", "r1": "Refunds", "r2": "Refunds"}
LIVE = dict.fromkeys(TRUTH, "Billing")  # the active model says Billing to all: right on b*, wrong on r*
CANDIDATE = {**TRUTH, "b4": "Refunds"}  # the candidate is right on r*, wrong on b4


def score(n: int, per_department: dict[str, float]) -> ModelScore:
    return ModelScore(macro_f1=0.8, weighted_f1=0.8, accuracy=0.8, n=n, per_department_f1=per_department)


def candidate_waiting(sessions, *, active: bool, shadow: bool, current: ModelScore | None = None,
                      candidate: ModelScore | None = None) -> int:
    """Model 2 gated (against model 1 when `active`), through shadow when `shadow`, waiting for approval."""
    with transaction(sessions) as session:
        add_examples(session, examples=[(TEXTS[k], TRUTH[k]) for k in TEXTS])
        ids = {k: session.exec(select(Query.id).where(Query.text == TEXTS[k])).one() for k in TEXTS}
        parent = None
        if active:
            parent = register_model(session, adapter_path="m1", base_model="tiny", labels=["Billing", "Refunds"],
                                    hyperparameters={}, metrics={}, parent_id=None).id
            promote(session, model_id=parent, by="test")
        model = register_model(session, adapter_path="m2", base_model="tiny", labels=["Billing", "Refunds"],
                               hyperparameters={}, metrics={}, parent_id=parent)
        run = start_run(session, trigger="test")
        report = RunReport(run_id=run.id, promoted=False, reason="in shadow", status=RunStatus.SHADOW.value,
                           candidate=candidate or score(40, {"Billing": 0.9, "Refunds": 0.8, "Shipping": 0.7}),
                           current=current if active else None,
                           baseline=score(40, {"Billing": 0.55, "Refunds": 0.45, "Shipping": 0.35}),
                           model_id=model.id)
        finish_run(session, run_id=run.id, status=RunStatus.SHADOW, reason="in shadow", report=report.to_json(),
                   candidate_id=model.id)
        start_pending(session, model_id=model.id, stage=ModelStatus.SHADOW)
        if shadow:
            rows = [ShadowRow(ids[k], LIVE[k], CANDIDATE[k], TRUTH[k], "audit") for k in TEXTS]
            evidence = shadow_evidence(rows, confidence=0.95).to_json()
            await_approval(session, model_id=model.id, reason="waiting", evidence=evidence)
        else:
            start_pending(session, model_id=model.id, stage=ModelStatus.AWAITING_APPROVAL)
        return model.id


def message(sessions, model_id: int) -> tuple[str, list[dict], str]:
    with sessions() as session:
        text, blocks = approval_message(session, get_model(session, model_id=model_id))
    shown = "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")
    return text, blocks, shown


def test_each_department_shows_candidate_and_active_model_on_the_holdout_and_in_shadow(sessions):
    current = score(40, {"Billing": 0.85, "Refunds": 0.6, "Shipping": 0.75, "Returns": 0.5})
    model_id = candidate_waiting(sessions, active=True, shadow=True, current=current)
    text, _, shown = message(sessions, model_id)
    assert f"approve {model_id}" in text and "replace model 1" in text
    assert ("*F1 by department*, candidate vs model 1 on the holdout (n=40); candidate vs model 1 on the shadow "
            "window's audited messages:") in shown
    rows = [line for line in shown.splitlines() if line.startswith("• ")]
    # Shadow F1s from the window's six audited messages: candidate Billing 3 of 4 found, no false alarm
    # (6/7), Refunds 2 of 2 with one false alarm (4/5); the active model Billing 4 of 4 with two false
    # alarms (8/10), Refunds none found.
    assert rows == [
        "• *Billing*: holdout 0.90 vs 0.85; shadow 0.86 vs 0.80 (4 audited)",
        "• *Refunds*: holdout 0.80 vs 0.60; shadow 0.80 vs 0.00 (2 audited)",
        "• *Returns*: holdout – vs 0.50; shadow: none audited",  # only the active model was scored on it
        "• *Shipping*: holdout 0.70 vs 0.75; shadow: none audited",  # no audited message in the window
    ]
    assert "0.55" not in shown  # the baseline is not the rival when there is an active model


def test_the_quoted_messages_are_escaped_so_nothing_fires(sessions):
    model_id = candidate_waiting(sessions, active=True, shadow=True, current=score(40, {"Billing": 0.85}))
    _, blocks, shown = message(sessions, model_id)
    assert "*Only the candidate got right* (2):" in shown and "*Only model 1 got right* (1):" in shown
    assert quote(Redactor().text(LOUD), limit=150) in shown and ">" + TEXTS["b4"] in shown
    assert "&lt;URL&gt;" in shown and "evil.example" not in shown  # redacted, then escaped
    assert ">refund for the jacket\n>&lt;!here&gt; second line" in shown  # every line of a message is quoted
    assert "&lt;!channel&gt; refund me NOW &amp; tell &lt;@U0BOSS&gt;" in shown
    for raw in ("<!channel>", "<!here>", "<@U0BOSS>", "<https://"):
        assert raw not in str(blocks)


def test_without_an_active_model_the_holdout_rival_is_the_baseline_and_no_shadow_is_claimed(sessions):
    model_id = candidate_waiting(sessions, active=False, shadow=False)
    text, _, shown = message(sessions, model_id)
    assert "replace the baseline" in text
    rows = [line for line in shown.splitlines() if line.startswith("• ")]
    assert rows == ["• *Billing*: holdout 0.90 vs 0.55", "• *Refunds*: holdout 0.80 vs 0.45",
                    "• *Shipping*: holdout 0.70 vs 0.35"]
    assert "shadow" not in shown.lower()


def test_a_long_table_is_split_across_sections_slack_accepts(sessions):
    many = {f"Department {i:03d}": 0.5 for i in range(150)}
    model_id = candidate_waiting(sessions, active=True, shadow=True, current=score(400, many),
                                 candidate=score(400, many))
    _, blocks, shown = message(sessions, model_id)
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(s) <= SECTION_CHARS for s in sections) and len(sections) <= 50
    rows = [line for line in shown.splitlines() if line.startswith("• *Department")]
    assert len(rows) == 150 and rows[149] == "• *Department 149*: holdout 0.50 vs 0.50; shadow: none audited"


def test_escape_shows_markup_as_written_and_drops_direction_overrides():
    assert escape("a < b && c > d") == "a &lt; b &amp;&amp; c &gt; d"
    assert escape("paid \u202egnp.exe\u202c") == "paid gnp.exe"
    assert quote("one\ntwo <!everyone>", limit=100) == ">one\n>two &lt;!everyone&gt;"
    assert quote("x" * 10, limit=4) == ">xxxx" and quote("", limit=4) == ">"
