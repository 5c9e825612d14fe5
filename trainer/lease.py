"""The training lease's heartbeat: a run that stops holding the lock must not publish."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from core.errors import SwitchboardError
from store.db import SessionFactory
from store.runs import TRAINING_LOCK, lock_owner, release_lock, renew_lock

log = logging.getLogger(__name__)


def owner_name() -> str:
    """Who holds the lease: this host, process and thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def release_if_holder_died(sessions: SessionFactory) -> bool:
    """Frees the training lock when its holder was a process on this host that no longer runs (killed,
    say, with kill -9), instead of making every run wait out its lease. True if it freed it."""
    with sessions() as session:
        owner = lock_owner(session, name=TRAINING_LOCK)
    host, _, rest = (owner or "").partition(":")
    pid = rest.partition(":")[0]
    if not owner or host != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
        return False
    log.warning("the training lock was held by process %s, which has died: freeing it", pid)
    release_lock(sessions, name=TRAINING_LOCK, owner=owner)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LeaseLost(SwitchboardError):
    """This run no longer holds the training lock: another may be training, so this one must not publish."""


class Heartbeat:
    """Renews the training lock while a run is alive, so a killed run's lock expires on its own.

    A failed renewal (a busy database, a dropped connection) is logged and tried again at the next
    beat; the thread never dies of one. The lease counts as lost when a renewal finds the lock gone
    or in another's hands, or when no renewal has succeeded for a whole lease: the run then checks
    `check()` before publishing and the store's `owns_lock` before registering, and fails instead.
    """

    def __init__(self, sessions: SessionFactory, owner: str, ttl: timedelta, *,
                 renew: Callable[..., bool] = renew_lock) -> None:
        """`renew`: the store's renewal (tests hand in one that fails on cue)."""
        self.owner = owner
        self._ttl = ttl
        self._renew = renew
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(sessions,), daemon=True)
        self._thread.start()

    def _beat(self, sessions: SessionFactory) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self._ttl.total_seconds() / 5):
            try:
                if not self._renew(sessions, name=TRAINING_LOCK, owner=self.owner, ttl=self._ttl):
                    log.error("the training lock is gone or held by another process: this run will not publish")
                    self._lost.set()
                    return
                renewed = time.monotonic()
            except Exception as exc:  # any database error: retried at the next beat
                log.warning("could not renew the training lock (%s); retrying", type(exc).__name__)
                if time.monotonic() - renewed > self._ttl.total_seconds():
                    log.error("no renewal of the training lock for a whole lease: this run will not publish")
                    self._lost.set()
                    return

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def check(self) -> None:
        if self._lost.is_set():
            raise LeaseLost("lost the training lock during the run (another run may have taken it): "
                            "the candidate was discarded")

    def stop(self) -> None:
        self._stop.set()
