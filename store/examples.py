"""Departments, labelled examples and their labels: keyword-only query functions over one session."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from core.errors import SwitchboardError
from core.reply_template import TemplateError, check_template
from core.vocabulary import FILE_ONLY_TEXT
from store.names import BadName, check_department_name, check_emoji, check_unlike
from store.split import AUDIT_HOLDOUT_FRACTION, HOLDOUT_FRACTION, assign_split, text_hash
from store.tables import OUT_OF_SCOPE, OUT_OF_SCOPE_ABOUT, Department, Label, LabelSource, Prediction, Query, Split


class StoreError(SwitchboardError, ValueError):
    """A request the store refuses; the message is fit to show a user."""


@dataclass(frozen=True)
class Example:
    query_id: int
    text: str
    label: str
    split: Split
    source: LabelSource
    labelled_at: datetime
    author: str | None = None


@dataclass
class AddResult:
    added: int = 0
    duplicates: int = 0
    conflicting_duplicates: int = 0
    new_departments: list[str] = field(default_factory=list)


def list_departments(session: Session) -> list[Department]:
    """The departments messages can be routed to (never the reserved out-of-scope class)."""
    return list(session.exec(select(Department).where(col(Department.out_of_scope).is_(False))
                             .order_by(col(Department.name))))


def descriptions(session: Session) -> dict[str, str | None]:
    """What each class is about, for prompts that name them: the departments' descriptions and the reserved class's."""
    return {d.name: d.description for d in list_departments(session)} | {OUT_OF_SCOPE: OUT_OF_SCOPE_ABOUT}


def get_department(session: Session, *, name: str) -> Department | None:
    """A department by name; `OUT_OF_SCOPE` gives the reserved class, created on first use."""
    if name == OUT_OF_SCOPE:
        return out_of_scope_class(session)
    return session.exec(select(Department).where(Department.name == name)).first()


def out_of_scope_class(session: Session) -> Department:
    found = session.exec(select(Department).where(col(Department.out_of_scope).is_(True))).first()
    if found is None:
        found = Department(name=OUT_OF_SCOPE, out_of_scope=True)
        session.add(found)
        session.flush()
    return found


def upsert_department(
    session: Session,
    *,
    name: str,
    emoji: str | None = None,
    channel: str | None = None,
    description: str | None = None,
    reserved_emoji: Collection[str] = (),
    customer_reply: str | None = None,
) -> Department:
    """Adds a department, or updates the emoji, channel and description given for an existing one.
    Every path that creates a department (import, `departments add`, the bot) comes through here, so
    a name or emoji that would break Slack's messages, or a new name that looks like a department's
    already there, is refused here, whatever the path."""
    try:
        name = check_department_name(name)
        emoji = check_emoji(emoji, reserved=reserved_emoji) if emoji is not None else None
        existing = get_department(session, name=name)
        if existing is None:
            check_unlike(name, taken=session.exec(select(Department.name)))
    except BadName as exc:
        raise StoreError(str(exc)) from None
    if emoji:
        owner = session.exec(select(Department).where(Department.emoji == emoji)).first()
        if owner and owner.name != name:
            raise StoreError(f"emoji :{emoji}: already belongs to {owner.name}")
    department = existing or Department(name=name)
    if customer_reply is not None:
        try:
            customer_reply = check_template(customer_reply)
        except TemplateError as exc:
            raise StoreError(str(exc)) from None
    for attr, value in (("emoji", emoji), ("channel", channel), ("description", description),
                        ("customer_reply", customer_reply)):
        if value is not None:
            setattr(department, attr, value)
    session.add(department)
    session.flush()
    return department


def _current_label_ids():  # type: ignore[no-untyped-def]
    """Subquery: the id of each query's label in force (newest not withdrawn)."""
    return (
        select(func.max(Label.id).label("label_id"))
        .where(col(Label.withdrawn_at).is_(None))
        .group_by(col(Label.query_id))
        .subquery()
    )


def labelled_examples(session: Session, *, split: Split | None = None) -> list[Example]:
    """Every query with a label in force, with that label (a file shared without words has nothing to learn)."""
    current = _current_label_ids()
    stmt = (
        select(Query, Label, Department)
        .join(current, current.c.label_id == Label.id)
        .join(Query, col(Query.id) == Label.query_id)
        .join(Department, col(Department.id) == Label.department_id)
        .where(col(Query.text) != FILE_ONLY_TEXT)
        .order_by(col(Query.id))
    )
    if split is not None:
        stmt = stmt.where(Query.split == split)
    return [
        Example(q.id, q.text, d.name, Split(q.split), LabelSource(lab.source), lab.created_at,  # type: ignore[arg-type]
                lab.author)
        for q, lab, d in session.exec(stmt)
    ]


def corrected_misroutes(session: Session) -> list[Example]:
    """Examples whose label in force is an agent's correction of a department the router answered."""
    corrected = [e for e in labelled_examples(session) if e.source == LabelSource.AGENT]
    latest = select(func.max(Prediction.id)).group_by(col(Prediction.query_id))
    answered = dict(session.exec(select(Prediction.query_id, Prediction.department)
                                 .where(col(Prediction.id).in_(latest))).all())
    return [e for e in corrected if e.query_id in answered and answered[e.query_id] != e.label]


def department_split_counts(session: Session) -> Counter[tuple[str, Split]]:
    """(department, split) counts over every labelled example."""
    return Counter((e.label, e.split) for e in labelled_examples(session))


def first_label_sources(session: Session) -> dict[int, LabelSource]:
    """Query id -> the source of its first label: the label that decided its split."""
    first = select(func.min(Label.id)).group_by(col(Label.query_id))
    rows = session.exec(select(Label.query_id, Label.source).where(col(Label.id).in_(first)))
    return {query_id: LabelSource(source) for query_id, source in rows}


def _split_pool(source: LabelSource) -> str:
    return "audit" if source == LabelSource.AUDIT else "history"


def split_counts_by_department(session: Session, *, source: LabelSource) -> Counter[tuple[str, Split]]:
    """(department, split) counts among the examples whose split was decided by a label of the same pool."""
    pool = _split_pool(source)
    first = first_label_sources(session)
    return Counter((e.label, e.split) for e in labelled_examples(session)
                   if e.query_id in first and first[e.query_id].judges and _split_pool(first[e.query_id]) == pool)


def split_for_new_label(digest: str, department: str, source: LabelSource,
                        counts: Counter[tuple[str, Split]]) -> Split:
    """The split a text gets from its first label: only sources that may judge ever reach the holdout."""
    if not source.judges:
        return Split.TRAIN
    fraction = AUDIT_HOLDOUT_FRACTION if source == LabelSource.AUDIT else HOLDOUT_FRACTION
    return assign_split(digest, n_train=counts[(department, Split.TRAIN)],
                        n_holdout=counts[(department, Split.HOLDOUT)], fraction=fraction)


def add_examples(
    session: Session,
    *,
    examples: Iterable[tuple[str, str]],
    source: LabelSource = LabelSource.IMPORT,
    author: str | None = None,
) -> AddResult:
    """Stores new (text, department) examples. A text already labelled is skipped, whatever its label; a
    text stored unlabelled (routed by the bot, never labelled) gets this label."""
    result = AddResult()
    examples_list = list(examples)
    counts = split_counts_by_department(session, source=source)
    departments = {d.name: d for d in list_departments(session)}
    seen: dict[str, str] = {}
    if any(label == OUT_OF_SCOPE for _, label in examples_list):
        departments[OUT_OF_SCOPE] = out_of_scope_class(session)
    hashes = [(text, label, text_hash(text)) for text, label in examples_list]
    known = _stored_labels(session, {h for _, _, h in hashes})
    for text, label, digest in hashes:
        earlier = seen[digest] if digest in seen else known.get(digest)
        if earlier:
            result.duplicates += 1
            result.conflicting_duplicates += earlier != label
            continue
        seen[digest] = label
        if label not in departments:
            departments[label] = upsert_department(session, name=label)
            result.new_departments.append(label)
        if earlier == "":  # a message the bot routed and nobody labelled: history labels it now
            stored = session.exec(select(Query).where(Query.text_hash == digest)).one()
            label_query(session, query=stored, department=departments[label], source=source, author=author)
            counts[(label, stored.split or Split.TRAIN)] += 1
            result.added += 1
            continue
        split = split_for_new_label(digest, label, source, counts)
        counts[(label, split)] += 1
        query = Query(text=text, text_hash=digest, split=split)
        session.add(query)
        session.flush()
        department_id = departments[label].id
        assert query.id is not None and department_id is not None
        session.add(Label(query_id=query.id, department_id=department_id, source=source, author=author))
        result.added += 1
    session.flush()
    return result


def _stored_labels(session: Session, digests: set[str]) -> dict[str, str]:
    """Text hash -> label in force ('' for a stored query with no label) for the hashes already stored."""
    current = _current_label_ids()
    found: dict[str, str] = {}
    items = sorted(digests)
    for start in range(0, len(items), 500):
        stmt = (
            select(Query.text_hash, Department.name)
            .select_from(Query)
            .outerjoin(Label, (col(Label.query_id) == Query.id) & col(Label.id).in_(select(current.c.label_id)))
            .outerjoin(Department, col(Department.id) == Label.department_id)
            .where(col(Query.text_hash).in_(items[start : start + 500]))
        )
        for digest, name in session.exec(stmt):
            found[digest] = name or ""
    return found


def label_query(
    session: Session, *, query: Query, department: Department, source: LabelSource, author: str | None,
    event_id: str | None = None,
) -> Label:
    """Gives a stored query a new label in force; the one it replaces is kept, marked superseded."""
    if query.split is None:
        counts = split_counts_by_department(session, source=source) if source.judges else Counter()
        query.split = split_for_new_label(query.text_hash, department.name, source, counts)
        session.add(query)
    label = Label(query_id=query.id, department_id=department.id, source=source, author=author,  # type: ignore[arg-type]
                  event_id=event_id)
    session.add(label)
    session.flush()
    previous = session.exec(
        select(Label)
        .where(Label.query_id == query.id, col(Label.withdrawn_at).is_(None), Label.id != label.id)
        .order_by(col(Label.id).desc())
    ).first()
    if previous is not None and previous.superseded_by is None:
        previous.superseded_by = label.id
        session.add(previous)
    return label


def count_labels_since(session: Session, since: datetime | None, *, by_people: bool = False) -> int:
    """Labels in force given after `since`; `by_people`: only those a person gave (the retrain trigger's
    count: implicit and distilled labels are written by the runs themselves)."""
    stmt = select(func.count()).select_from(Label).where(col(Label.withdrawn_at).is_(None))
    if by_people:
        stmt = stmt.where(col(Label.source).not_in([LabelSource.IMPLICIT, LabelSource.BASELINE]))
    if since is not None:
        stmt = stmt.where(Label.created_at > since)
    return int(session.exec(stmt).one())

