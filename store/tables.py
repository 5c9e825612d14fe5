"""Every table of the store. Query functions live in their own modules beside this one."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.vocabulary import OUT_OF_SCOPE, OUT_OF_SCOPE_ABOUT
from store.timestamps import UTCDateTime

__all__ = ["OUT_OF_SCOPE", "OUT_OF_SCOPE_ABOUT"]  # re-exported: the store's callers name the class from here


def utcnow() -> datetime:
    """Every timestamp is aware UTC."""
    return datetime.now(UTC)


class Split(StrEnum):
    TRAIN = "train"
    HOLDOUT = "holdout"


class LabelSource(StrEnum):
    """Who gave a label, and so whether it may judge models.

    Imported history, admins' labels and audits of randomly sampled messages are not selected by
    the active model's errors: their holdout split is what the gate judges on. An agent's
    correction or confirmation of a message they chose to react to, and the baseline's
    distilled labels, only ever train.
    """

    IMPORT = "import"
    AGENT = "agent"
    CONFIRM = "confirm"
    ADMIN = "admin"
    AUDIT = "audit"
    BASELINE = "baseline"
    IMPLICIT = "implicit"  # a route no agent corrected within the grace window (store/implicit.py)
    ASKED = "asked"  # an agent's answer when the bot asked about a message it was least sure of

    @property
    def judges(self) -> bool:
        return self in (LabelSource.IMPORT, LabelSource.ADMIN, LabelSource.AUDIT)

    @property
    def by_a_person(self) -> bool:
        """Given by someone who looked at the message (not inferred from silence, nor the baseline's)."""
        return self not in (LabelSource.IMPLICIT, LabelSource.BASELINE)


class ModelStatus(StrEnum):
    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"
    REJECTED = "rejected"
    SHADOW = "shadow"  # passed the gate; scores live messages beside the active model, never answers
    AWAITING_APPROVAL = "awaiting_approval"  # passed (and its shadow window); waits for an admin


class RunStatus(StrEnum):
    RUNNING = "running"
    PROMOTED = "promoted"
    NOT_PROMOTED = "not_promoted"
    SKIPPED = "skipped"
    FAILED = "failed"
    SHADOW = "shadow"  # its candidate is in shadow: the verdict comes when the window ends
    AWAITING_APPROVAL = "awaiting_approval"


class Department(SQLModel, table=True):
    """A department, or (`out_of_scope`, one row named `OUT_OF_SCOPE`) the reserved class for none."""

    __tablename__ = "departments"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=100)
    out_of_scope: bool = Field(default=False)
    emoji: str | None = Field(default=None, unique=True)
    channel: str | None = None
    description: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    customer_reply: str | None = None  # this department's own reply to the customer (a template), or `off`


class Query(SQLModel, table=True):
    """A text seen once. `split` is set when the text first becomes a labelled example, never after."""

    __tablename__ = "queries"
    id: int | None = Field(default=None, primary_key=True)
    text: str
    text_hash: str = Field(unique=True, index=True)
    split: Split | None = Field(default=None, index=True)
    slack_channel: str | None = None
    slack_ts: str | None = Field(default=None, index=True)
    slack_user: str | None = None
    slack_event_id: str | None = Field(default=None, index=True)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Label(SQLModel, table=True):
    """A department given to a query. The newest label not withdrawn is the query's label."""

    __tablename__ = "labels"
    id: int | None = Field(default=None, primary_key=True)
    query_id: int = Field(foreign_key="queries.id", index=True)
    department_id: int = Field(foreign_key="departments.id", index=True)
    source: LabelSource
    author: str | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True, sa_type=UTCDateTime)
    superseded_by: int | None = Field(default=None, foreign_key="labels.id")
    withdrawn_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The Slack event that gave it, and the one that took it back: a redelivered or retried event
    # finds its own label here instead of writing (or withdrawing) another.
    event_id: str | None = Field(default=None, unique=True, index=True)
    withdrawn_event_id: str | None = Field(default=None, index=True)


class ModelVersion(SQLModel, table=True):
    """One adapter folder, written once. Only the `registry` pointer and `status` ever change."""

    __tablename__ = "model_versions"
    id: int | None = Field(default=None, primary_key=True)
    adapter_path: str
    base_model: str
    labels: list[str] = Field(sa_column=Column(JSON, nullable=False))
    hyperparameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: ModelStatus = Field(default=ModelStatus.CANDIDATE, index=True)
    parent_id: int | None = Field(default=None, foreign_key="model_versions.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    promoted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Registry(SQLModel, table=True):
    """The active-model pointer: one row, moved in the same transaction as the statuses."""

    __tablename__ = "registry"
    id: int = Field(default=1, primary_key=True)
    active_model_id: int | None = Field(default=None, foreign_key="model_versions.id")
    changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    changed_by: str | None = None


class Prediction(SQLModel, table=True):
    __tablename__ = "predictions"
    id: int | None = Field(default=None, primary_key=True)
    query_id: int = Field(foreign_key="queries.id", index=True)
    model_version_id: int | None = Field(default=None, foreign_key="model_versions.id")
    department: str
    confidence: float
    scores: dict[str, float] = Field(sa_column=Column(JSON, nullable=False))
    latency_ms: float
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    out_of_scope: float | None = None  # the router's probability that the message belongs to no department
    # Set when the few-shot baseline routed the message (cold start): what that answer cost.
    baseline_model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None


class BaselinePrediction(SQLModel, table=True):
    """The few-shot baseline's answer to one query under one prompt and model: paid for once, reused by every run."""

    __tablename__ = "baseline_predictions"
    __table_args__ = (UniqueConstraint("query_id", "prompt_version", "model", name="uq_baseline_prediction"),)
    id: int | None = Field(default=None, primary_key=True)
    query_id: int = Field(foreign_key="queries.id", index=True)
    prompt_version: str
    model: str
    department: str
    prompt_tokens: int
    completion_tokens: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class BaselineShot(SQLModel, table=True):
    """One few-shot example of the baseline's prompt, chosen once for its department and kept.

    A fixed set of shots keeps the baseline a fixed yardstick (its score comparable run to run) and
    its prompt, and so its cache of paid-for answers, unchanged as data grows. `baseline reset`
    deletes them to re-pick on purpose.
    """

    __tablename__ = "baseline_shots"
    id: int | None = Field(default=None, primary_key=True)
    department: str = Field(index=True)
    text: str
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TrainingRun(SQLModel, table=True):
    __tablename__ = "training_runs"
    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: RunStatus = Field(default=RunStatus.RUNNING, index=True)
    snapshot_hash: str | None = None
    candidate_id: int | None = Field(default=None, foreign_key="model_versions.id")
    report: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    reason: str | None = None
    trigger: str | None = None
    approval_posted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # the admins were asked


class ShadowPrediction(SQLModel, table=True):
    """A candidate in shadow's answer to a live message: stored, never shown. One per candidate and
    query, so that a redelivered message counts once in the window."""

    __tablename__ = "shadow_predictions"
    __table_args__ = (UniqueConstraint("model_version_id", "query_id", name="uq_shadow_prediction"),)
    id: int | None = Field(default=None, primary_key=True)
    model_version_id: int = Field(foreign_key="model_versions.id", index=True)
    query_id: int = Field(foreign_key="queries.id", index=True)
    department: str
    confidence: float
    none_of_these: bool = False
    latency_ms: float = 0.0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SlackMessage(SQLModel, table=True):
    """A customer's Slack message and the bot's routing reply, tied to the query they hold.

    Several messages may share a query (the same text posted twice); reactions find their query
    here by either message's ts, so the bot never has to read channel history.
    """

    __tablename__ = "slack_messages"
    __table_args__ = (UniqueConstraint("channel", "ts", name="uq_slack_message"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str
    ts: str
    user: str | None = None
    user_hash: str | None = Field(default=None, index=True)  # the user id salted (store/salted.py), after retention
    event_id: str | None = None
    query_id: int = Field(foreign_key="queries.id", index=True)
    prediction_id: int | None = Field(default=None, foreign_key="predictions.id")
    routed_to: str | None = None  # None: sent to triage
    reply_ts: str | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    audit_requested: bool = Field(default=False)
    ask_requested: bool = Field(default=False)  # the bot asked agents for the department (it was least sure)
    external: bool = Field(default=False)  # its author is of another organisation (Slack Connect)


class EarlyRemoval(SQLModel, table=True):
    """A reaction removal handled before the reaction it removes (Slack's events can arrive out of
    order): the matching addition, when it comes with an earlier `event_ts`, is then ignored."""

    __tablename__ = "early_removals"
    id: int | None = Field(default=None, primary_key=True)
    query_id: int = Field(foreign_key="queries.id", index=True)
    author: str
    department_id: int = Field(foreign_key="departments.id")
    removed_ts: str  # the removal's Slack event_ts
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SlackEvent(SQLModel, table=True):
    """A Slack event as durable work (store/deliveries.py): held by one owner at a time under a lease
    it renews while it works, retried after a failure, handed to people when retries run out.

    `attempts` counts handlings started (the first delivery's included); `handing_off` marks an
    event whose retries ran out and whose hand-off to the triage channel is now what is retried.
    `gave_up_at` is when the bot stopped trying to route it: with `done_at`, handed off to people;
    without, even the hand-off failed and an operator must look (a /metrics gauge).
    """

    __tablename__ = "slack_events"
    event_id: str = Field(primary_key=True)
    claimed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    payload: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    attempts: int = Field(default=0)
    retry_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = None
    gave_up_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    owner: str | None = None
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    handing_off: bool = Field(default=False)


class SlackPost(SQLModel, table=True):
    """A message the bot posts at most once, by key ("reply:C1:1700.1", "forward:…", "handoff:…").

    The intent is written before the call and the ts after it; an intent without a ts means an
    earlier attempt may have posted it, and Slack is asked (bot/posting.py) before posting again.
    """

    __tablename__ = "slack_posts"
    key: str = Field(primary_key=True, max_length=200)
    channel: str
    thread_ts: str | None = None
    intent_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    ts: str | None = Field(default=None, index=True)
    message_id: int | None = Field(default=None, index=True)  # the customer's message it is about (a reply or a copy)


class Lock(SQLModel, table=True):
    """A lease that any process can see: held until released or until `expires_at` passes."""

    __tablename__ = "locks"
    name: str = Field(primary_key=True)
    owner: str
    expires_at: datetime = Field(sa_type=UTCDateTime)


class TrainingRequest(SQLModel, table=True):
    """An admin's `/switchboard retrain`, waiting for the trainer service (store/training_requests.py)."""

    __tablename__ = "training_requests"
    id: int | None = Field(default=None, primary_key=True)
    requested_by: str
    channel: str | None = None
    requested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    started_by: str | None = None  # the trainer service that took it
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    run_id: int | None = None
    outcome: str | None = None  # the report's text, or why no run happened
    open_slot: int | None = Field(default=1, unique=True, index=True)  # 1 while unanswered: one open request at most


class Alert(SQLModel, table=True):
    """A drift alarm: raised once per department and model (store/drift.py)."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("kind", "department", "model_id", name="uq_alert"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str
    department: str
    model_id: int
    raised_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class ForgetRecord(SQLModel, table=True):
    """That a customer's data was forgotten, without the data: who asked, when, how much went, and which
    models had been trained on it (until one trained without it is active, `status` says so)."""

    __tablename__ = "forget_records"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    kind: str  # "user", "message" or "message_deleted" (Slack's event)
    requested_by: str
    rows: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON))
    trained_models: list[int] = Field(default_factory=list, sa_column=Column(JSON))


class StoreSalt(SQLModel, table=True):
    """One random value per store: what texts deleted after the retention period are hashed with, so their
    hashes still find a repeated text but cannot be looked up in a table of common texts' hashes."""

    __tablename__ = "store_salt"
    id: int = Field(default=1, primary_key=True)
    value: str


class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"
    version: int = Field(primary_key=True)
    applied_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SlackWork(SQLModel, table=True):
    """A Slack call the bot still owes after forgetting (store/slack_work.py): the bot's post at (channel, ts)
    to delete. No content: only where the post is and why it goes. Deleted once done."""

    __tablename__ = "slack_work"
    __table_args__ = (UniqueConstraint("channel", "ts", name="uq_slack_work"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str
    ts: str
    reason: str  # what the post was: "forward", "reply", "approval request", ...
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    attempts: int = 0
    retry_at: datetime = Field(default_factory=utcnow, index=True, sa_type=UTCDateTime)  # due (or taken until)
    last_error: str | None = None
    gave_up_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ApprovalQuote(SQLModel, table=True):
    """That the approval request posted at (channel, ts) quotes query `query_id`'s text, so that forgetting the
    text deletes the request (trainer/approval.py, store/slack_work.py)."""

    __tablename__ = "approval_quotes"
    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(index=True)
    query_id: int = Field(index=True)
    channel: str
    ts: str
