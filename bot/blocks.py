"""The bot's messages in Block Kit, each with a plain `text` fallback for notifications."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.mrkdwn import quote
from store.tables import OUT_OF_SCOPE, Department

Blocks = list[dict[str, Any]]
QUOTE_CHARS = 500
AUDIT_RIGHT, AUDIT_DEPARTMENT, AUDIT_NONE = "audit_right", "audit_department", "audit_none"
OUT_OF_SCOPE_WORDING = "This does not look like a question for any department"
AUDIT_BLOCK = "audit:"  # the actions block's id: this prefix, then the SlackMessage's id in the store
ASK_BLOCK = "ask:"  # the same for a question about a message the model was least sure of
MAX_OPTIONS, OPTION_CHARS = 100, 75  # Slack's limits for a static_select and an option's text
HELP_CHARS = 1500  # the emoji list's share of a context text (Slack's limit for one is 2,000 characters)


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def reroute_help(departments: Sequence[Department]) -> str:
    """How an agent reroutes: the departments' emoji (as many as fit `HELP_CHARS`, then how many more),
    and the check mark that confirms. Slack refuses a whole message whose text object is too long."""
    shown: list[str] = []
    for d in departments:
        choice = f":{d.emoji}: {d.name}" if d.emoji else f"{d.name} (no emoji yet)"
        if sum(len(c) + 3 for c in shown) + len(choice) > HELP_CHARS:
            break
        shown.append(choice)
    more = len(departments) - len(shown)
    choices = " · ".join(shown) + (f" · and {more} more (the app's Home tab lists them all)" if more else "")
    return (f"Wrong department? Agents react with the right one's emoji: {choices}. "
            ":white_check_mark: confirms the route.")


def routed(department: str, confidence: float, departments: Sequence[Department], model: str | None) -> Blocks:
    return [section(f"Routed to *{department}* ({confidence:.0%} confident)."),
            _context(f"{reroute_help(departments)} Model {model}.")]


def triage(scores: dict[str, float], departments: Sequence[Department], model: str | None, *,
           why: str | None = None) -> Blocks:
    top = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:2]
    why = why or (f"not sure where this goes ({', '.join(f'{name} {p:.0%}' for name, p in top)})" if top
                  else "no model is trained yet")
    return [section(f":warning: *Needs triage*: {why}."),
            _context(reroute_help(departments) + (f" Model {model}." if model else ""))]


def out_of_scope(probability: float | None, departments: Sequence[Department], model: str | None, *,
                 emoji: str) -> Blocks:
    """The reply to a message the router says belongs to no department: it goes to triage, said plainly."""
    how_sure = f" ({probability:.0%})" if probability is not None else ""
    return [section(f":{emoji}: *Needs triage*: {OUT_OF_SCOPE_WORDING}{how_sure}."),
            _context(f"{reroute_help(departments)} :{emoji}: agrees that it belongs to none."
                     + (f" Model {model}." if model else ""))]


def relabelled(department: str, agent: str, *, confirmed: bool, departments: Sequence[Department]) -> Blocks:
    if department == OUT_OF_SCOPE:
        return [section(f":no_entry_sign: Marked as out of scope (no department) by <@{agent}>."),
                _context(reroute_help(departments))]
    head = (f":white_check_mark: *{department}* confirmed by <@{agent}>." if confirmed
            else f":arrows_counterclockwise: Rerouted to *{department}* by <@{agent}>.")
    return [section(head), _context(reroute_help(departments))]


def option(department: str) -> dict[str, Any]:
    """A department as a menu's option: its name as the value, shown cut to Slack's limit."""
    return {"text": {"type": "plain_text", "text": department[:OPTION_CHARS]}, "value": department}


def audit_request(message_id: int, departments: Sequence[Department], *, right: str | None,
                  chosen: str | None = None, asking: bool = False) -> Blocks:
    """The quality-check question under a reply: ✅ Right (only when the message was routed) and a department menu.

    `asking`: the bot's own question about a message it was least sure of (bot/asks.py), answered
    with the same buttons; its answers train, an audit's may also judge models.

    `right` is the department the message was routed to, carried in the button's value; `chosen`
    is shown as the menu's selection once someone has answered. Past `MAX_OPTIONS` departments the menu
    is an external_select, its options served as the agent types (bot/department_menu.py).
    """
    options = [option(d.name) for d in departments[:MAX_OPTIONS]]
    elements: list[dict[str, Any]] = []
    if right:
        elements.append({"type": "button", "action_id": AUDIT_RIGHT, "style": "primary", "value": right,
                         "text": {"type": "plain_text", "text": "✅ Right", "emoji": True}})
    if options:
        menu: dict[str, Any] = {"type": "static_select", "action_id": AUDIT_DEPARTMENT, "options": options,
                                "placeholder": {"type": "plain_text", "text": "Right department…"}}
        selected = next((o for o in options if o["value"] == chosen), None)
        if len(departments) > MAX_OPTIONS:  # more than a static menu holds: Slack asks the bot as the agent types
            menu = {"type": "external_select", "action_id": AUDIT_DEPARTMENT, "min_query_length": 0,
                    "placeholder": {"type": "plain_text", "text": "Right department (type to search)…"}}
            selected = option(chosen) if chosen and any(d.name == chosen for d in departments) else None
        elements.append(menu | ({"initial_option": selected} if selected else {}))
        elements.append({"type": "button", "action_id": AUDIT_NONE, "value": OUT_OF_SCOPE,
                         "text": {"type": "plain_text", "text": f"🚫 {OUT_OF_SCOPE}", "emoji": True}})
    if not elements:
        return []
    question = ("Not sure about this one: which department is right? Agents' answers teach the model."
                if asking else "Quality check: is this right? Agents answer here; audited answers measure the model.")
    return [section(question),
            {"type": "actions", "block_id": f"{ASK_BLOCK if asking else AUDIT_BLOCK}{message_id}",
             "elements": elements}]


def audited_message_id(block_id: str | None) -> int | None:
    """The SlackMessage id in an audit's or a question's block id, or None for any other block."""
    for prefix in (AUDIT_BLOCK, ASK_BLOCK):
        head, _, rest = (block_id or "").partition(prefix)
        if not head and rest.isdigit():
            return int(rest)
    return None


def audited(department: str, agent: str, departments: Sequence[Department], *, verb: str = "Audited") -> Blocks:
    return [section(f"{verb} by <@{agent}>: *{department}*"), _context(reroute_help(departments))]


def forwarded(department: str, *, user: str | None, channel: str, text: str, permalink: str | None,
              by_agent: str | None = None, confidence: float | None = None,
              why: str | None = None) -> tuple[str, Blocks]:
    """The post in a department's (or the triage) channel, linking back to the customer's message; `why`
    is said after the head (computed from `by_agent` and `confidence` when None; "" says nothing)."""
    who = f"<@{user}>" if user else "a customer"
    if why is None:
        why = (f"rerouted by <@{by_agent}>" if by_agent else
               f"{confidence:.0%} confident" if confidence is not None else "needs triage")
    head = f"New query for *{department}* from {who} in <#{channel}>" + (f" ({why})" if why else "")
    link = f"\n<{permalink}|Open the conversation>" if permalink else ""
    return head, [section(f"{head}\n{quoted(text)}{link}")]


def quoted(text: str) -> str:
    """A customer's words as a quote that Slack shows and never acts on: `&`, `<` and `>` escaped (so
    `<!channel>`, `<!here>`, `<!subteam^…>` and `<@U…>` are shown, not fired), bidirectional control
    characters dropped (they can make a quote read as something else), at most `QUOTE_CHARS`."""
    return quote(text, limit=QUOTE_CHARS)
