"""Faults around a training run: a lease that lapses, a database that is busy, an admin who moves the
pointer mid-run. Each ends with every label kept and the active model the one it should be."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from store import registry
from store.db import transaction
from store.examples import add_examples
from store.registry import ActiveModelMoved, active_model, list_models, promote, register_model
from store.runs import TRAINING_LOCK, release_lock, renew_lock, try_acquire_lock
from store.tables import Lock, ModelStatus, ModelVersion, RunStatus, TrainingRun
from tests.support import EXAMPLES, FAST, schema_version, trainer_deps, wait_until
from trainer.alternatives import AlternativeSet
from trainer.candidate import CandidateTrainer, Trained, TrainingJob, train_candidate
from trainer.lease import Heartbeat, LeaseLost
from trainer.pipeline import RunOptions, run_training


def seeded(sessions) -> None:
    with transaction(sessions) as session:
        add_examples(session, examples=EXAMPLES)


def acting_after_training(action) -> CandidateTrainer:
    """The candidate trainer, then `action()`: after the candidate is trained, before anything is published."""
    def train_then_act(job: TrainingJob) -> Trained:
        trained = train_candidate(job)
        action()
        return trained

    return train_then_act


def options() -> RunOptions:
    return RunOptions(config=FAST, progress=False, alternatives=AlternativeSet.NONE)


def test_a_failed_renewal_does_not_stop_the_heartbeat(sessions):
    assert try_acquire_lock(sessions, name=TRAINING_LOCK, owner="me", ttl=timedelta(seconds=1))
    calls = []

    def busy_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("UPDATE locks", {}, Exception("database is locked"))
        return renew_lock(*args, **kwargs)

    heartbeat = Heartbeat(sessions, "me", ttl=timedelta(seconds=1), renew=busy_once)
    try:
        wait_until(lambda: len(calls) >= 3, what="three beats")  # the first failed, the next two renewed
        heartbeat.check()
        with sessions() as session:
            lock = session.get(Lock, TRAINING_LOCK)
            assert lock is not None and lock.owner == "me"
        assert len(calls) >= 3
    finally:
        heartbeat.stop()
        release_lock(sessions, name=TRAINING_LOCK, owner="me")


def test_a_heartbeat_that_finds_its_lock_taken_says_the_lease_is_lost(sessions):
    assert try_acquire_lock(sessions, name=TRAINING_LOCK, owner="me", ttl=timedelta(seconds=1))
    heartbeat = Heartbeat(sessions, "me", ttl=timedelta(seconds=1))
    try:
        release_lock(sessions, name=TRAINING_LOCK, owner="me")
        assert try_acquire_lock(sessions, name=TRAINING_LOCK, owner="someone else", ttl=timedelta(minutes=5))
        wait_until(lambda: heartbeat.lost, what="the lease lost")
        with pytest.raises(LeaseLost, match="lost the training lock"):
            heartbeat.check()
    finally:
        heartbeat.stop()


def test_a_run_whose_lock_was_taken_mid_run_registers_and_promotes_nothing(settings, sessions):
    seeded(sessions)

    def another_run_takes_the_lock():
        with transaction(sessions) as session:
            session.exec(select(Lock)).one().owner = "another run"

    report = run_training(trainer_deps(settings, sessions, train_candidate=acting_after_training(
        another_run_takes_the_lock)), options())
    assert report.status == RunStatus.FAILED.value and "lost the training lock" in report.reason
    with sessions() as session:
        assert list_models(session) == [] and active_model(session) is None
        assert session.exec(select(Lock)).one().owner == "another run"  # its lock is left alone
        assert session.exec(select(TrainingRun)).one().status == RunStatus.FAILED
    assert [p for p in settings.adapters_dir.iterdir() if p.is_dir()] == []  # the candidate's folder is gone


def test_a_promotion_made_during_a_run_is_not_undone_by_it(settings, sessions, tmp_path):
    seeded(sessions)
    admins_choice = []

    def an_admin_promotes_another_model():
        with transaction(sessions) as session:
            model = register_model(session, adapter_path=str(tmp_path / "imported"), base_model="b",
                                   labels=["Billing"], hyperparameters={}, metrics={}, parent_id=None)
            promote(session, model_id=model.id, by="admin")
            admins_choice.append(model.id)

    deps = trainer_deps(settings, sessions, train_candidate=acting_after_training(an_admin_promotes_another_model))
    report = run_training(deps, options())  # a first model: the gate would promote it
    assert report.status == RunStatus.NOT_PROMOTED.value and not report.promoted
    assert "first model" in report.reason and "the active model changed during the run" in report.reason
    with sessions() as session:
        assert active_model(session).id == admins_choice[0]
        candidate = next(m for m in list_models(session) if m.id == report.model_id)
        assert candidate.status == ModelStatus.REJECTED


def test_two_pointer_moves_from_the_same_state_cannot_both_win(sessions, tmp_path):
    with transaction(sessions) as session:
        ids = [register_model(session, adapter_path=str(tmp_path / str(i)), base_model="b", labels=["x"],
                              hyperparameters={}, metrics={}, parent_id=None).id for i in range(3)]
        promote(session, model_id=ids[0])
    with transaction(sessions) as session:
        promote(session, model_id=ids[1], if_active_is=ids[0])
    with transaction(sessions) as session, pytest.raises(ActiveModelMoved, match=f"model {ids[0]} when it began"):
        promote(session, model_id=ids[2], if_active_is=ids[0])  # gated against the model before the first move
    with transaction(sessions) as session, pytest.raises(ActiveModelMoved, match="nothing moved"):
        # the store's own compare-and-set, as when another transaction moved the pointer after this one read it
        registry._move_pointer(session, to=session.get(ModelVersion, ids[2]), retire_as=ModelStatus.RETIRED,
                               by="late", expected=ids[0])
    with sessions() as session:
        assert active_model(session).id == ids[1]
        assert [m.status for m in list_models(session)] == ["retired", "active", "candidate"]


def test_a_migration_that_dies_half_way_leaves_no_trace_and_the_next_start_completes_it(tmp_path):
    from sqlalchemy import inspect, text

    from store import migrations
    from store.db import make_engine

    def dies_after_its_first_table(conn):
        conn.execute(text("CREATE TABLE half_done (id INTEGER PRIMARY KEY)"))
        raise KeyboardInterrupt("killed between a table and its version row")

    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with pytest.raises(KeyboardInterrupt):
        migrations.migrate(engine, [*migrations.MIGRATIONS[:2], dies_after_its_first_table])
    assert schema_version(engine) == 2 and not inspect(engine).has_table("half_done")
    assert migrations.migrate(engine) == list(range(3, len(migrations.MIGRATIONS) + 1))


def test_processes_starting_together_on_a_new_store_all_start(tmp_path):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'new.db'}"
    code = ("import sys; from store.db import make_engine; from store.migrations import migrate; "
            "from sqlalchemy import text; e = make_engine(sys.argv[1]); migrate(e); "
            "print(e.connect().execute(text('SELECT MAX(version) FROM schema_version')).scalar_one())")
    starts = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for _ in range(4)]
    results = [(p.wait(timeout=120), p.stdout.read().strip(), p.stderr.read()) for p in starts]
    from store import migrations

    assert all(rc == 0 for rc, _, _ in results), [err for _, _, err in results]
    assert {out for _, out, _ in results} == {str(len(migrations.MIGRATIONS))}


def test_connections_opening_a_new_store_at_one_instant_all_get_wal(tmp_path):
    """Switching a new file to WAL from several connections at once can deadlock; SQLite then
    says "database is locked" without waiting. This failed in CI before the engine retried."""
    import sqlite3
    import threading

    from store.db import BUSY_TIMEOUT_MS, configure_sqlite_connection

    failures: list[str] = []
    for attempt in range(100):
        path = tmp_path / f"new{attempt}.db"
        together = threading.Barrier(6)

        def connect(path=path, together=together) -> None:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            together.wait()
            try:
                configure_sqlite_connection(conn, None)
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            except sqlite3.OperationalError as error:
                failures.append(str(error))
            finally:
                conn.close()

        threads = [threading.Thread(target=connect) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


def test_the_next_run_removes_the_scratch_folder_a_crashed_run_left(settings, sessions):
    from classifier.routing.adapters import new_adapter_dir

    scratch, _ = new_adapter_dir(settings.adapters_dir, name="run0001-crashed")
    (scratch / "adapter_model.safetensors").write_bytes(b"half written")
    report = run_training(trainer_deps(settings, sessions), options())  # nothing to train on: skipped, after the sweep
    assert report.status == RunStatus.SKIPPED.value
    assert list(settings.adapters_dir.iterdir()) == []


def test_event_claims_are_forgotten_once_slack_can_no_longer_retry_them(sessions):
    from datetime import UTC, datetime

    from store.deliveries import KEEP_FINISHED, claim, finish
    from store.tables import SlackEvent

    with transaction(sessions) as session:
        session.add(SlackEvent(event_id="Ev-old", claimed_at=datetime(2026, 1, 1, tzinfo=UTC),
                               done_at=datetime.now(UTC) - KEEP_FINISHED - timedelta(minutes=1)))
    lease = timedelta(minutes=1)
    assert claim(sessions, event_id="Ev-new", payload={}, owner="me", lease=lease)
    finish(sessions, event_id="Ev-new")
    with sessions() as session:
        assert [e.event_id for e in session.exec(select(SlackEvent))] == ["Ev-new"]
    assert not claim(sessions, event_id="Ev-new", payload={}, owner="me", lease=lease)  # still a duplicate
