"""The trainer service apart from the bot: admins' requests are recorded once, taken by one trainer,
answered with the run's report, given back when a run holds the lock, and offered again when the
trainer that took one died. The runs here are scripted; tests/test_bot_model.py and
tests/test_loop.py run real ones through the same service."""

from __future__ import annotations

import threading
from datetime import timedelta

from store.db import transaction
from store.run_report import RunReport
from store.runs import TRAINING_LOCK, release_lock, try_acquire_lock
from store.tables import TrainingRequest, utcnow
from store.training_requests import (
    ORPHANED_AFTER,
    answer_request,
    note_trainer_alive,
    note_trainer_stopped,
    request_training,
    take_request,
    trainer_running,
)
from trainer.pipeline import TrainingBusy
from trainer.service import TrainerService


def test_a_second_request_while_one_waits_records_nothing_new(sessions):
    first, created = request_training(sessions, by="U1", channel="C1")
    again, created_again = request_training(sessions, by="U2", channel="C2")
    assert created and not created_again and again.id == first.id and again.requested_by == "U1"
    answer_request(sessions, first.id, run_id=None, outcome="done")
    _, created_after = request_training(sessions, by="U2", channel="C2")
    assert created_after


def test_two_trainers_polling_at_once_take_a_request_once(sessions):
    request_training(sessions, by="U1", channel="C1")
    taken: list[TrainingRequest | None] = []
    start = threading.Barrier(4)

    def poll(worker: str) -> None:
        start.wait()
        taken.append(take_request(sessions, worker=worker))

    threads = [threading.Thread(target=poll, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([t for t in taken if t is not None]) == 1
    assert take_request(sessions, worker="late") is None


def test_a_request_taken_by_a_trainer_that_died_is_offered_again(sessions):
    request, _ = request_training(sessions, by="U1", channel="C1")
    assert take_request(sessions, worker="dead") is not None
    assert take_request(sessions, worker="alive") is None  # just taken: its run may be starting
    with transaction(sessions) as session:
        row = session.get(TrainingRequest, request.id)
        row.started_at = utcnow() - ORPHANED_AFTER - timedelta(seconds=1)
    assert try_acquire_lock(sessions, name=TRAINING_LOCK, owner="dead", ttl=timedelta(minutes=1))
    assert take_request(sessions, worker="alive") is None  # its run still holds the lock
    release_lock(sessions, name=TRAINING_LOCK, owner="dead")
    retaken = take_request(sessions, worker="alive")
    assert retaken is not None and retaken.id == request.id and retaken.started_by == "alive"


def test_the_bot_can_tell_whether_a_trainer_is_running(sessions):
    with sessions() as session:
        assert not trainer_running(session)
    note_trainer_alive(sessions, worker="t1", ttl=timedelta(seconds=30))
    with sessions() as session:
        assert trainer_running(session)
    note_trainer_stopped(sessions, worker="t1")
    note_trainer_alive(sessions, worker="t2", ttl=timedelta(seconds=-1))  # a trainer killed long ago
    with sessions() as session:
        assert not trainer_running(session)


def _report(run_id: int) -> RunReport:
    return RunReport(run_id=run_id, promoted=True, reason="scripted")


def test_the_service_answers_a_request_with_the_report_in_the_channel_that_asked(sessions):
    posted: list[tuple[str | None, str | None, str]] = []
    runs: list[str] = []

    def run_now(trigger: str) -> RunReport:
        runs.append(trigger)
        return _report(7)

    service = TrainerService(sessions, run_now, post=lambda *args: posted.append(args))
    assert service.answer_next() is False and runs == []
    request, _ = request_training(sessions, by="UADMIN", channel="CADMIN")
    assert service.answer_next() is True and service.answer_next() is False
    assert runs == ["slack"]
    [(channel, user, text)] = posted
    assert channel == "CADMIN" and user == "UADMIN" and "<@UADMIN> asked for a retrain" in text and "run 7" in text
    with sessions() as session:
        answered = session.get(TrainingRequest, request.id)
    assert answered.run_id == 7 and answered.finished_at is not None and answered.outcome.startswith("run 7")


def test_a_request_waits_while_another_run_holds_the_lock_and_a_failure_is_reported(sessions):
    outcomes: list[object] = [TrainingBusy("busy"), RuntimeError("disk full")]
    posted: list[str] = []

    def run_now(trigger: str) -> RunReport:
        outcome = outcomes.pop(0)
        assert isinstance(outcome, Exception)
        raise outcome

    service = TrainerService(sessions, run_now, post=lambda channel, user, text: posted.append(text))
    request, _ = request_training(sessions, by="U1", channel="C1")
    assert service.answer_next() is False and posted == []
    with sessions() as session:
        assert session.get(TrainingRequest, request.id).started_at is None  # given back, not lost
    assert service.answer_next() is True
    assert "The retraining run failed (RuntimeError: disk full); the active model is unchanged." in posted[0]
    with sessions() as session:
        assert session.get(TrainingRequest, request.id).finished_at is not None


def test_the_running_service_polls_and_says_it_is_alive(sessions):
    answered = threading.Event()
    service = TrainerService(sessions, lambda trigger: _report(1), post=lambda *args: answered.set(),
                             poll_seconds=0.05).start()
    try:
        request_training(sessions, by="U1", channel="C1")
        assert answered.wait(10)
        with sessions() as session:
            assert trainer_running(session)
    finally:
        service.stop()
    with sessions() as session:
        assert not trainer_running(session)
