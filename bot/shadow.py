"""Shadow scoring: each live message is also classified by the candidate in shadow, after the customer's
reply is posted, and stored; the candidate's answer is never shown (trainer/promotion.py judges it).

Messages are scored in batches of `ShadowQueue.batch`: alone, a message costs the candidate more
than the active model's whole time for it (the hooks add work to every layer); in a batch of eight
far less, which keeps a message's model time while a shadow runs under twice what it is without
(`bench/shadow_latency.py`, docs/retraining-loop.md).
The batch is scored in the listener that completes it; a message still waiting when the bot stops
is not scored (the window counts stored answers, so it only takes a message longer to fill). A
failure here is logged and changes nothing for the customer: the reply was already sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from classifier.routing.router import Classification
from store.db import SessionFactory, transaction
from store.shadow import has_shadow, record_shadow, shadow_candidate
from store.tables import SlackMessage

log = logging.getLogger(__name__)

ShadowClassify = Callable[[Sequence[str], int, str], list[Classification]]  # texts, candidate's id and folder
SHADOW_BATCH = 8


@dataclass
class ShadowQueue:
    classify: ShadowClassify | None = None  # None: this router cannot serve a second adapter
    batch: int = SHADOW_BATCH
    # The store is asked which candidate is in shadow at most this often, as the served model's pointer is
    # (classifier/serving/active_router.py): most of the time there is none, and a message need not pay to
    # learn it.
    refresh_s: float = 2.0
    clock: Callable[[], float] = time.monotonic
    _waiting: dict[int, str] = field(default_factory=dict)  # query id -> text, for `_candidate`
    _candidate: tuple[int, str] | None = None
    _in_shadow: tuple[float, tuple[int, str] | None] | None = None  # (when read, candidate) from the store
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def waiting(self) -> int:
        """Messages queued for the candidate, not scored yet."""
        with self._lock:
            return len(self._waiting)

    def add(self, sessions: SessionFactory, message: SlackMessage, text: str) -> int:
        """Queues the message for the candidate in shadow, if there is one and it has not answered it yet;
        scores the batch when this completes it. Returns how many answers were stored now."""
        if self.classify is None:
            return 0
        key = self._candidate_in_shadow(sessions)
        if key is None:
            return 0
        with sessions() as session:
            if has_shadow(session, model_id=key[0], query_id=message.query_id):
                return 0
        with self._lock:
            if self._candidate != key:  # a new candidate: what waited for the old one is dropped
                self._candidate, self._waiting = key, {}
            self._waiting[message.query_id] = text
            if len(self._waiting) < self.batch:
                return 0
            ready, self._waiting = self._waiting, {}
        return self._score(sessions, key, ready)

    def _candidate_in_shadow(self, sessions: SessionFactory) -> tuple[int, str] | None:
        """(id, adapter folder) of the candidate in shadow, read from the store at most every `refresh_s`."""
        now = self.clock()
        known = self._in_shadow
        if known is not None and now - known[0] < self.refresh_s:
            return known[1]
        with sessions() as session:
            candidate = shadow_candidate(session)
            key = (candidate.id, candidate.adapter_path) if candidate is not None and candidate.id else None
        self._in_shadow = (now, key)
        return key

    def _score(self, sessions: SessionFactory, candidate: tuple[int, str], ready: dict[int, str]) -> int:
        assert self.classify is not None
        model_id, folder = candidate
        try:
            results = self.classify(list(ready.values()), model_id, folder)
        except Exception:
            log.exception("the candidate in shadow (model %s) could not classify %d messages", model_id, len(ready))
            return 0
        stored = 0
        with transaction(sessions) as session:
            for query_id, result in zip(ready, results, strict=True):
                stored += record_shadow(session, model_id=model_id, query_id=query_id, department=result.department,
                                        confidence=result.confidence, none_of_these=result.none_of_these,
                                        latency_ms=result.latency_ms)
        return stored
