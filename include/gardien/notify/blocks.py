"""Slack message values and the small Block Kit helpers every builder shares (pure, no I/O)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

# Slack's documented limits: a section's text holds 3,000 characters, a message 50 blocks; the
# fallback text is cut well below chat.postMessage's 40,000 so a notification never gets refused.
SECTION_LIMIT = 3000
MAX_BLOCKS = 50
TEXT_LIMIT = 4000

_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"
_WS_RE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """A notification: the fallback ``text`` (notifications, screen readers) and Block Kit ``blocks``."""

    text: str
    blocks: tuple[Mapping[str, Any], ...]

    def payload(self) -> dict[str, Any]:
        """The keyword arguments ``chat.postMessage`` takes besides the channel."""
        return {"text": self.text, "blocks": [dict(b) for b in self.blocks]}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> SlackMessage:
        """Rebuild a message stored by :meth:`payload` (e.g. from the outbox)."""
        blocks = payload.get("blocks") or ()
        return cls(text=str(payload.get("text", "")), blocks=tuple(dict(b) for b in blocks))


def escape(text: object) -> str:
    """Escape Slack's three control characters so user text can never form a link or mention."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: object) -> str:
    """Collapse whitespace so a user comment cannot break the layout of a field."""
    return _WS_RE.sub(" ", str(text)).strip()


def link(url: str | None, label: str) -> str:
    """A mrkdwn link; the label is escaped and the URL cannot close the link early."""
    if not url:
        return escape(label)
    # '|' and '>' would end the link and spaces break it: percent-encode them; '&' is entity-escaped
    # as Slack expects inside <...>.
    safe_url = quote(url.strip(), safe=_URL_SAFE).replace("&", "&amp;")
    return f"<{safe_url}|{escape(label)}>"


def header(text: str) -> dict[str, Any]:
    """A header block; callers pass fixed wording only (plain_text is shown verbatim)."""
    return {"type": "header", "text": {"type": "plain_text", "text": truncate(text, 150), "emoji": True}}


def section(mrkdwn: str) -> dict[str, Any]:
    """A section block of already escaped mrkdwn."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(mrkdwn, SECTION_LIMIT)}}


def fields(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A section of label/value fields (values already escaped); Slack shows at most ten."""
    items = [{"type": "mrkdwn", "text": truncate(f"*{label}*\n{value}", 2000)} for label, value in pairs[:10]]
    return {"type": "section", "fields": items}


def context(mrkdwn: str) -> dict[str, Any]:
    """A context block (small grey text) of already escaped mrkdwn."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(mrkdwn, 2000)}]}


def divider() -> dict[str, Any]:
    """A divider block."""
    return {"type": "divider"}


def message(text: str, blocks: Sequence[Mapping[str, Any]]) -> SlackMessage:
    """Assemble a message within Slack's limits."""
    return SlackMessage(text=truncate(text, TEXT_LIMIT), blocks=tuple(blocks[:MAX_BLOCKS]))
