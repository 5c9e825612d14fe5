"""A candidate after the gate: in shadow on live messages, then promoted, refused, or decided by an admin.

Through the real Bolt app over HTTP with the loopback Slack and the scripted router of tests/support.py
as the active model; the candidate in shadow is a second scripted classifier handed to the bot as
`BotDeps.shadow`, as `switchboard serve` hands it the served router's `classify_shadow`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from sqlmodel import select

from bot.blocks import AUDIT_RIGHT
from bot.shadow import ShadowQueue
from classifier.routing.adapters import META_FILE, AdapterMeta
from classifier.routing.prompt import PromptFormat
from classifier.routing.router import Classification
from core.vocabulary import APPROVE_ACTION
from store.db import transaction
from store.registry import active_model, get_model, promote, register_model
from store.runs import finish_run, start_run
from store.shadow import start_pending
from store.tables import ModelStatus, RunStatus, ShadowPrediction, TrainingRun
from tests.support import ADMIN, AGENT, STRANGER, answer, posts, route, stored_message, text_of, wait_until
from trainer.approval import ask_for_approvals
from trainer.gate import GateRules
from trainer.promotion import settle_shadow

BILLING = ["I was charged twice for my order", "my invoice shows the wrong amount", "a payment failed at checkout"]
REFUNDS = ["I want a refund for the shoes", "where is my refund for the jacket", "refund my cancelled order please"]


def always(department: str, seen: list[list[str]] | None = None):
    """A candidate that answers `department` whatever the message: worse than the scripted router."""
    def classify(texts: list[str], model_id: int, folder: str) -> list[Classification]:
        if seen is not None:
            seen.append(list(texts))
        return [Classification(department, 0.9, {department: 0.9}, f"candidate {model_id}", 2.0, model_id=model_id)
                for _ in texts]
    return classify


def pending(sessions, stage: ModelStatus, *, window: int) -> int:
    """The scripted router's model 1 active, and model 2, gated against it, in `stage` with its run."""
    with transaction(sessions) as session:
        promote(session, model_id=1, by="test")
        model = register_model(session, adapter_path="scripted-candidate", base_model="scripted",
                               labels=["Billing", "Shipping", "Refunds"], hyperparameters={},
                               metrics={"macro_f1": 0.9}, parent_id=1)
        assert model.id is not None
        run = start_run(session, trigger="test")
        finish_run(session, run_id=run.id, status=RunStatus(stage.value), reason="in shadow: passed the gate",
                   report={"run_id": run.id, "promoted": False, "reason": "in shadow", "shadow_window": window,
                           "candidate": {"macro_f1": 0.9, "weighted_f1": 0.9, "accuracy": 0.9, "n": 40,
                                         "per_department_f1": {"Billing": 0.9, "Refunds": 0.9}}},
                   candidate_id=model.id)
        start_pending(session, model_id=model.id, stage=stage)
        return model.id


def servable_adapter(folder: Path) -> None:
    """The files an adapter folder must hold to pass the promotion's check (the scripted router never loads it)."""
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    save_file({"lora": torch.zeros(1)}, str(folder / "adapter_model.safetensors"))
    meta = AdapterMeta(labels=["Billing", "Shipping", "Refunds"], prompt=PromptFormat(), base_model="scripted",
                       hyperparameters={})
    (folder / META_FILE).write_text(json.dumps(meta.to_dict()))


def shadow_rows(sessions) -> list[ShadowPrediction]:
    with sessions() as session:
        return list(session.exec(select(ShadowPrediction)))


def run_of(sessions, model_id: int) -> TrainingRun:
    with sessions() as session:
        return session.exec(select(TrainingRun).where(TrainingRun.candidate_id == model_id)).one()


def test_a_candidate_in_shadow_never_answers_and_is_refused_when_the_audits_show_it_worse(start_bot, sessions):
    seen: list[list[str]] = []
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="1", shadow=always("Shipping", seen))
    messages = BILLING + REFUNDS
    candidate = pending(sessions, ModelStatus.SHADOW, window=len(messages))
    for i, text in enumerate(messages):
        reply = route(bot, text, ts=f"100.{i:06d}")
        assert text_of(reply).startswith(f"Routed to {'Billing' if text in BILLING else 'Refunds'}")
        wait_until(lambda i=i: len(shadow_rows(sessions)) == i + 1, what="the shadow's answer stored")
        answer(bot, AUDIT_RIGHT, user=AGENT, ts=f"100.{i:06d}", updates=i + 1)  # an agent confirms the route
    assert seen == [[text] for text in messages]
    assert not posts(bot.slack, "CSHIPPING")  # nothing forwarded where the candidate would have sent it
    assert {r.department for r in shadow_rows(sessions)} == {"Shipping"}

    bot.event({"type": "message", "channel": "CSUPPORT", "user": "UCUSTOMER", "text": BILLING[0],
               "ts": "100.000000"})  # the first message delivered again: it counts once
    assert settle_shadow(sessions, GateRules(shadow_messages=len(messages) + 1)) is None  # the window is not full
    assert len(shadow_rows(sessions)) == len(messages)

    settled = settle_shadow(sessions, GateRules(shadow_messages=len(messages)))
    assert settled is not None and settled.outcome == RunStatus.NOT_PROMOTED
    assert "worse than the active router on the shadow window" in settled.reason
    assert "6 audited: macro-F1 0.000 against the active router's 1.000" in settled.reason
    with sessions() as session:
        assert active_model(session).id == 1
        assert get_model(session, model_id=candidate).status == ModelStatus.REJECTED
    run = run_of(sessions, candidate)
    assert run.status == RunStatus.NOT_PROMOTED and run.report["decision"]["by"] == "trainer (shadow)"
    assert run.report["shadow"]["only_live_right"] and not run.report["shadow"]["only_candidate_right"]
    route(bot, "one more about my invoice", ts="101.000000")
    assert len(shadow_rows(sessions)) == len(messages)  # no candidate in shadow any more: nothing scored


def test_the_shadow_scores_messages_in_batches_and_a_new_candidate_drops_the_old_ones_batch(start_bot, sessions):
    seen: list[list[str]] = []
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0", shadow=always("Billing", seen), shadow_batch=4)
    candidate = pending(sessions, ModelStatus.SHADOW, window=8)
    for i in range(3):
        route(bot, f"invoice question {i}", ts=f"300.{i:06d}")
    wait_until(lambda: bot.deps.shadow.waiting == 3, what="three messages queued after their replies")
    assert not seen and not shadow_rows(sessions)  # three wait for a fourth
    with transaction(sessions) as session:  # a newer candidate takes over the shadow
        newer = register_model(session, adapter_path="newer", base_model="scripted", labels=[], hyperparameters={},
                               metrics={}, parent_id=1)
        start_pending(session, model_id=newer.id, stage=ModelStatus.SHADOW)
    for i in range(3, 7):
        route(bot, f"invoice question {i}", ts=f"300.{i:06d}")
    wait_until(lambda: len(shadow_rows(sessions)) == 4, what="the batch stored")
    assert seen == [[f"invoice question {i}" for i in range(3, 7)]]  # one call, the new candidate's four
    assert {r.model_version_id for r in shadow_rows(sessions)} == {newer.id} != {candidate}


def test_the_queue_asks_the_store_for_a_candidate_at_most_once_a_refresh(start_bot, sessions):
    now, seen = [0.0], []
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    queue = ShadowQueue(always("Billing", seen), batch=1, refresh_s=60, clock=lambda: now[0])
    route(bot, "invoice question 1", ts="310.000001")
    first = stored_message(sessions, "310.000001")
    assert queue.add(sessions, first, "invoice question 1") == 0  # none in shadow: that is remembered
    pending(sessions, ModelStatus.SHADOW, window=8)
    now[0] = 59.0
    assert queue.add(sessions, first, "invoice question 1") == 0 and seen == []  # not asked again yet
    now[0] = 61.0
    assert queue.add(sessions, first, "invoice question 1") == 1 and seen == [["invoice question 1"]]


def test_a_candidate_no_worse_on_the_window_is_promoted(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="1", shadow=always("Billing"))
    candidate = pending(sessions, ModelStatus.SHADOW, window=len(BILLING))
    for i, text in enumerate(BILLING):
        route(bot, text, ts=f"200.{i:06d}")
        wait_until(lambda i=i: len(shadow_rows(sessions)) == i + 1, what="the shadow's answer stored")
    settled = settle_shadow(sessions, GateRules(shadow_messages=len(BILLING)))
    assert settled is not None and settled.outcome == RunStatus.PROMOTED, settled
    assert "100% agreement" in settled.reason and "none audited" in settled.reason
    with sessions() as session:
        assert active_model(session).id == candidate


def test_only_an_admin_approves_and_the_decision_is_recorded_once(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    candidate = pending(sessions, ModelStatus.AWAITING_APPROVAL, window=0)
    asked: list[str] = []

    def ask(text: str, blocks: list[dict]) -> None:
        asked.append(bot.client.chat_postMessage(channel="CADMIN", text=text, blocks=blocks)["ts"])

    assert ask_for_approvals(sessions, ask) == [candidate]
    assert ask_for_approvals(sessions, ask) == [] and len(asked) == 1  # asked once
    request = posts(bot.slack, "CADMIN")[-1]
    assert "*Billing*: holdout 0.90" in text_of(request)
    ts = asked[0]

    assert bot.action(APPROVE_ACTION, user=STRANGER, ts=ts, channel="CADMIN").status == 200
    refusal = bot.slack.wait_for("chat.postEphemeral")[-1].body
    assert refusal["user"] == STRANGER and "Only Switchboard admins" in refusal["text"]
    with sessions() as session:
        assert get_model(session, model_id=candidate).status == ModelStatus.AWAITING_APPROVAL

    assert bot.action(APPROVE_ACTION, user=ADMIN, ts=ts, channel="CADMIN").status == 200
    unservable = bot.slack.wait_for("chat.postEphemeral", 2)[-1].body
    assert unservable["text"] == "Nothing changed: adapter folder scripted-candidate is missing."
    with sessions() as session:
        assert get_model(session, model_id=candidate).status == ModelStatus.AWAITING_APPROVAL

    servable_adapter(Path("scripted-candidate"))
    assert bot.action(APPROVE_ACTION, user=ADMIN, ts=ts, channel="CADMIN").status == 200
    update = bot.slack.wait_for("chat.update")[-1].body
    assert f"approved model {candidate}: it is active now" in update["text"]
    assert not [b for b in update["blocks"] if b["type"] == "actions"]  # the buttons are gone
    with sessions() as session:
        assert active_model(session).id == candidate
    run = run_of(sessions, candidate)
    assert run.status == RunStatus.PROMOTED and run.report["decision"]["by"] == f"admin {ADMIN}"
    assert run.report["decision"]["at"]

    response = bot.command(f"reject {candidate}", user=ADMIN)
    assert "Nothing changed" in response.body and f"model {candidate} is not in shadow" in response.body
    with sessions() as session:
        assert active_model(session).id == candidate


def test_the_slash_command_rejects_a_candidate_in_shadow_and_refuses_early_approval(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0", shadow=always("Billing"))
    candidate = pending(sessions, ModelStatus.SHADOW, window=200)
    assert "admins only" in bot.command("approve", user=AGENT).body
    assert "can be approved once its window ends" in bot.command("approve", user=ADMIN).body
    route(bot, "my invoice is wrong", ts="400.000000")
    wait_until(lambda: len(shadow_rows(sessions)) == 1, what="the shadow's answer stored")
    assert "in shadow, 1 of 200 live messages, 100% agreement" in bot.command("status", user=AGENT).body
    bot.event({"type": "app_home_opened", "user": AGENT, "channel": "DHOME", "tab": "home"})
    home = text_of({"blocks": bot.slack.wait_for("views.publish")[-1].body["view"]["blocks"]})
    assert f"Candidate model {candidate} in shadow, 1 of 200 live messages, 100% agreement" in home
    assert f"rejected model {candidate}" in bot.command("reject", user=ADMIN).body
    with sessions() as session:
        assert active_model(session).id == 1
        assert get_model(session, model_id=candidate).status == ModelStatus.REJECTED


def test_a_run_sends_its_passing_candidate_to_shadow_and_a_newer_one_supersedes_it(settings, sessions):
    from tests.support import LOOP, MORE, seed, trainer_deps
    from tests.test_loop import WEAK
    from trainer.alternatives import AlternativeSet
    from trainer.pipeline import RunOptions, run_training
    from trainer.report_text import report_lines
    from trainer.schedule import pending_labels

    def run(config, rules):
        return run_training(trainer_deps(settings, sessions, rules=rules),
                            RunOptions(config=config, progress=False, alternatives=AlternativeSet.NONE))

    seed(sessions)
    first = run(WEAK, GateRules(shadow_messages=5))
    assert first.promoted and first.status == "promoted"  # nothing routed live before it: nothing to shadow
    seed(sessions, MORE)
    second = run(LOOP, GateRules(shadow_messages=5))
    assert not second.promoted and second.status == "shadow" and second.shadow_window == 5, second.reason
    assert second.reason.startswith("in shadow: passed the gate (macro-F1")
    assert report_lines(second)[0] == f"run {second.run_id}: {second.reason}"
    assert pending_labels(sessions) == 0  # its labels were trained on: no retrain is due because of them
    with sessions() as session:
        assert active_model(session).id == first.model_id
        assert get_model(session, model_id=second.model_id).status == ModelStatus.SHADOW
        assert get_model(session, model_id=second.model_id).parent_id == first.model_id

    with transaction(sessions) as session:  # a newer candidate passes: the one in shadow is superseded
        newer = register_model(session, adapter_path="newer", base_model="tiny", labels=[], hyperparameters={},
                               metrics={}, parent_id=first.model_id)
        assert start_pending(session, model_id=newer.id, stage=ModelStatus.AWAITING_APPROVAL) == [second.model_id]
    run_row = run_of(sessions, second.model_id)
    assert run_row.status == RunStatus.NOT_PROMOTED
    assert run_row.reason == f"not promoted: superseded by model {newer.id}, a newer candidate"


def test_with_approval_even_the_first_model_waits_for_an_admin(settings, sessions):
    from store.shadow import decide_by_admin
    from tests.support import FAST, seed, trainer_deps
    from trainer.alternatives import AlternativeSet
    from trainer.pipeline import RunOptions, run_training

    seed(sessions)
    report = run_training(trainer_deps(settings, sessions, rules=GateRules(shadow_messages=200, approval=True)),
                          RunOptions(config=FAST, progress=False, alternatives=AlternativeSet.NONE))
    assert not report.promoted and report.status == "awaiting_approval"
    assert report.reason.startswith("waiting for an admin's approval: passed the gate")
    with sessions() as session:
        assert active_model(session) is None
    with transaction(sessions) as session:
        decide_by_admin(session, model_id=report.model_id, approve=True, by="admin (cli)")
    with sessions() as session:
        assert active_model(session).id == report.model_id
    assert run_of(sessions, report.model_id).report["decision"]["by"] == "admin (cli)"
