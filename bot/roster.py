"""Who is a Switchboard agent or admin: member ids as written, user groups and department channels as Slack says now.

`SWITCHBOARD_AGENTS` and `SWITCHBOARD_ADMINS` name members (`U…`, `W…`) and user groups (`S…`); with
`SWITCHBOARD_AGENTS_FROM_DEPARTMENT_CHANNELS` every member of a department's channel is an agent too.
Groups are read with `usergroups.users.list`, channels with `conversations.members`; what Slack
answered is kept in memory and read again once it is `REFRESH_EVERY_S` old, and at once for the
group or channel that a `subteam_members_changed`, `member_joined_channel` or `member_left_channel`
event names, so nobody restarts the bot to add or remove an agent. A lookup Slack fails keeps the
last members it gave (before any answer, the ids as written still count); nothing here raises into
a handler. Admins may always relabel.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from store.examples import list_departments

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from core.settings import Settings
    from store.db import SessionFactory

log = logging.getLogger(__name__)

REFRESH_EVERY_S = 600.0  # the longest a member added or removed in Slack waits without an event
RETRY_AFTER_S = 60.0  # a lookup Slack failed is tried again this soon, not on every reaction
PAGE = 200  # members a `conversations.members` page asks for (Slack advises no more than 200)
MAX_PAGES = 100


def is_group(slack_id: str) -> bool:
    return slack_id.startswith("S")


class Roster:
    """`is_agent` and `is_admin` for every handler; one per process, shared by the listener threads."""

    def __init__(self, *, agents: Iterable[str] = (), admins: Iterable[str] = (), client: WebClient | None = None,
                 sessions: SessionFactory | None = None, from_department_channels: bool = False,
                 refresh_every_s: float = REFRESH_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        """Without `client` (or `sessions`, for the department channels) only the member ids count."""
        agents, admins = frozenset(agents), frozenset(admins)
        self.agent_ids = frozenset(a for a in agents if not is_group(a))
        self.admin_ids = frozenset(a for a in admins if not is_group(a))
        self.agent_groups = frozenset(filter(is_group, agents))
        self.admin_groups = frozenset(filter(is_group, admins))
        self.from_department_channels = from_department_channels
        self.client, self.sessions, self.clock = client, sessions, clock
        self.refresh_every_s = refresh_every_s
        self._groups: dict[str, frozenset[str]] = {}  # group id -> its members, as Slack last answered
        self._channels: dict[str, frozenset[str]] = {}  # department channel -> its members, likewise
        self._due: float | None = None  # when the next full lookup is due; None: never done
        self._lock = threading.Lock()  # guards the two maps
        self._refreshing = threading.Lock()  # one full lookup at a time

    @classmethod
    def of(cls, settings: Settings, *, client: WebClient | None, sessions: SessionFactory,
           clock: Callable[[], float] = time.monotonic) -> Roster:
        return cls(agents=settings.agents, admins=settings.admins, client=client, sessions=sessions,
                   from_department_channels=settings.agents_from_department_channels, clock=clock)

    # -- who is who
    def is_agent(self, user: str | None) -> bool:
        """An agent or an admin: both may relabel."""
        if not user:
            return False
        if user in self.agent_ids or user in self.admin_ids:
            return True
        self._refresh_if_due()
        with self._lock:
            return (any(user in self._groups.get(g, ()) for g in self.agent_groups | self.admin_groups)
                    or any(user in members for members in self._channels.values()))

    def is_admin(self, user: str | None) -> bool:
        if not user:
            return False
        if user in self.admin_ids:
            return True
        self._refresh_if_due()
        with self._lock:
            return any(user in self._groups.get(g, ()) for g in self.admin_groups)

    # -- keeping up
    @property
    def _resolves(self) -> bool:
        """Whether anything here needs Slack: without, the ids as written are the whole answer."""
        return self.client is not None and bool(
            self.agent_groups or self.admin_groups or (self.from_department_channels and self.sessions))

    def _refresh_if_due(self) -> None:
        if not self._resolves or (self._due is not None and self.clock() < self._due):
            return
        # The first lookup is waited for; later ones are done by one thread while the others answer
        # from the last members known.
        if not self._refreshing.acquire(blocking=self._due is None):
            return
        try:
            if self._due is None or self.clock() >= self._due:
                self._refresh()
        finally:
            self._refreshing.release()

    def refresh(self) -> None:
        """Looks every group and department channel up again now."""
        if self._resolves:
            with self._refreshing:
                self._refresh()

    def _refresh(self) -> None:
        done = all([self._look_up_group(g) for g in sorted(self.agent_groups | self.admin_groups)])
        if self.from_department_channels and self.sessions is not None:
            channels = self._department_channels()
            if channels is None:
                done = False
            else:
                with self._lock:
                    self._channels = {c: m for c, m in self._channels.items() if c in channels}
                done = all([self._look_up_channel(c) for c in sorted(channels)]) and done
        self._due = self.clock() + (self.refresh_every_s if done else RETRY_AFTER_S)

    def group_changed(self, event: dict[str, Any]) -> None:
        """`subteam_members_changed`: the change is applied at once, then the group is read again."""
        group = event.get("subteam_id") or ""
        if self.client is None or group not in self.agent_groups | self.admin_groups:
            return
        added, removed = set(event.get("added_users") or ()), set(event.get("removed_users") or ())
        with self._lock:
            self._groups[group] = frozenset((set(self._groups.get(group, ())) | added) - removed)
        log.info("user group %s changed (%d added, %d removed)", group, len(added), len(removed))
        self._look_up_group(group)

    def channel_changed(self, event: dict[str, Any]) -> None:
        """`member_joined_channel` / `member_left_channel` in a department's channel: likewise."""
        channel, user = event.get("channel") or "", event.get("user")
        if self.client is None or not self.from_department_channels or not user:
            return
        channels = self._department_channels()
        if channels is None or channel not in channels:
            return
        with self._lock:
            members = set(self._channels.get(channel, ()))
            if event.get("type") == "member_left_channel":
                members.discard(user)
            else:
                members.add(user)
            self._channels[channel] = frozenset(members)
        self._look_up_channel(channel)

    # -- Slack and the store
    def _look_up_group(self, group: str) -> bool:
        assert self.client is not None
        try:
            users = self.client.usergroups_users_list(usergroup=group).get("users") or []
        except Exception as exc:
            log.warning("could not read the members of user group %s (%s): keeping the %s", group,
                        _reason(exc), "last known" if group in self._groups else "ids as written alone")
            return False
        with self._lock:
            self._groups[group] = frozenset(users)
        return True

    def _look_up_channel(self, channel: str) -> bool:
        assert self.client is not None
        members: set[str] = set()
        cursor: str | None = None
        try:
            for _ in range(MAX_PAGES):
                answer = self.client.conversations_members(channel=channel, limit=PAGE, cursor=cursor)
                members.update(answer.get("members") or [])
                cursor = (answer.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        except Exception as exc:
            log.warning("could not read the members of department channel %s (%s): keeping the last known",
                        channel, _reason(exc))
            return False
        with self._lock:
            self._channels[channel] = frozenset(members)
        return True

    def _department_channels(self) -> set[str] | None:
        """The departments' channels now (departments come and go); None when the store cannot say."""
        if self.sessions is None:
            return set()
        try:
            with self.sessions() as session:
                return {d.channel for d in list_departments(session) if d.channel}
        except Exception:
            log.warning("could not read the departments' channels: keeping the last known", exc_info=True)
            return None


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    error = response.get("error") if response is not None and hasattr(response, "get") else None
    return str(error or f"{type(exc).__name__}: {exc}")
