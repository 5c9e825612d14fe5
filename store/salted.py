"""The store's salted hashes of a Slack user id: what a message keeps of its author once its text expired."""

from __future__ import annotations

import hashlib
import hmac

from sqlmodel import Session

from store.tables import StoreSalt


def user_hash(session: Session, user: str) -> str:
    """The user id keyed with the store's own salt (`store_salt`): `forget --user` still finds the messages,
    while the id cannot be read back, nor looked up in a list of a workspace's ids without the salt."""
    salt = session.get(StoreSalt, 1)
    assert salt is not None, "migration 12 creates the store's salt"
    return "salted:" + hmac.new(salt.value.encode(), f"slack-user:{user}".encode(), hashlib.sha256).hexdigest()
