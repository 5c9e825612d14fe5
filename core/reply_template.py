"""The customer's reply template (`SWITCHBOARD_CUSTOMER_REPLY`, or a department's own), checked and filled.

A template names the team with `{team}` and nothing else; `off` posts nothing in the customer's
thread. A message no department took yet (triage, out of scope, a file without words) names the
`TRIAGE_TEAM`, so the customer hears that people have it without hearing that the model was unsure.
"""

from __future__ import annotations

import string

DEFAULT_CUSTOMER_REPLY = "Thanks — the *{team}* team has your question and will answer in this thread."
OFF = "off"
TRIAGE_TEAM = "support"
MAX_CHARS = 1000


class TemplateError(ValueError):
    """A customer reply template that cannot be filled."""


def check_template(template: str) -> str:
    """The template as given, or a TemplateError naming what is wrong with it."""
    template = template.strip()
    if template.lower() == OFF:
        return OFF
    if not template or len(template) > MAX_CHARS:
        raise TemplateError(f"a customer reply must have 1 to {MAX_CHARS} characters, or be `off`")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise TemplateError(f"the customer reply {template!r} is not a template: {exc}") from None
    if fields - {"team"}:
        raise TemplateError(f"the customer reply may name only {{team}}, not {', '.join(sorted(fields - {'team'}))}")
    return template


def fill(template: str, team: str) -> str | None:
    """The customer's reply naming `team`; None when the template is `off`."""
    return None if template == OFF else template.format(team=team)
