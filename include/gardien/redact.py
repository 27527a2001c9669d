"""One redaction for every message that leaves Gardien: ledger events, logs, Slack, reports, CLI errors.

Two layers, because a password can reach a message in forms no single pattern sees:

- patterns: a URI's ``user:password@``, ``password=...`` in key=value form (quoted, with spaces and escaped
  quotes, or bare), and the libpq errors that echo a piece of the connection string verbatim (e.g.
  ``invalid percent-encoded token: "<password>"`` for a ``%`` in a URI password);
- known secrets: every password Gardien has seen in a DSN it was given (``register_dsn``), ``PGPASSWORD``
  and the passwords of the ``.pgpass`` file (``PGPASSFILE`` or ``~/.pgpass``), replaced wherever they
  appear, raw or percent-encoded. Secrets shorter than ``MIN_SECRET`` characters are left to the patterns:
  replacing every "abc" in a message would make it unreadable.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote

MASK = "***"
MIN_SECRET = 4
T = TypeVar("T")

_KEYWORDS = r"(?:password|passwd|pwd|pgpassword|sslpassword)"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # libpq echoing a piece of the connection string: the quoted piece may hold the password (or part of it).
    (
        re.compile(
            r"((?:invalid percent-encoded token|invalid URI query parameter|invalid connection option|"
            r'unexpected spaces found in|invalid integer value|invalid value for parameter)[^"\n]*")[^\n]*(")'
        ),
        r"\1" + MASK + r"\2",
    ),
    (re.compile(r'(missing "=" after ")[^\n]*(" in connection info string)'), r"\1" + MASK + r"\2"),
    # URI userinfo: scheme://user:password@host — everything up to the '@' on that line.
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@?#]*:)[^@/\n]*(@)"), r"\1" + MASK + r"\2"),
    # key=value (libpq, URI query, env dumps): quoted values up to their closing quote (or the end), else one word.
    (
        re.compile(
            r"(?i)(\b"
            + _KEYWORDS
            + r"\s*[=:]\s*)('(?:[^'\\\n]|\\.)*(?:'|$)|\"(?:[^\"\\\n]|\\.)*(?:\"|$)|[^\s&,;]+)"
        ),
        r"\1" + MASK,
    ),
)

_lock = threading.Lock()
_registered: set[str] = set()
_pgpass_cache: tuple[tuple[str, float], frozenset[str]] | None = None


def register_secret(value: str | None) -> None:
    """Remember ``value`` (and its percent-encoded forms) to be masked in every later message."""
    if not value or len(value) < MIN_SECRET:
        return
    forms = {value, quote(value, safe=""), quote(value, safe="!$&'()*+,;=:~"), unquote(value)}
    with _lock:
        _registered.update(f for f in forms if len(f) >= MIN_SECRET)


def register_dsn(dsn: str | None) -> None:
    """Remember the password of ``dsn`` (URI or key=value, even one libpq cannot parse)."""
    if not dsn:
        return
    for secret in _secrets_in_dsn(dsn):
        register_secret(secret)


def _secrets_in_dsn(dsn: str) -> set[str]:
    found: set[str] = set()
    try:
        import psycopg2.extensions

        password = psycopg2.extensions.parse_dsn(dsn).get("password")
        if password:
            found.add(password)
    except Exception:  # noqa: BLE001 - a malformed DSN is exactly the case the fallbacks below are for
        pass
    if m := re.search(r"://[^\s:/@?#]*:([^@/\n]*)@", dsn):
        found.add(m.group(1))
    for m in re.finditer(r"(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'?|[^\s&]+)", dsn):
        raw = m.group(1)
        if raw.startswith("'"):
            raw = re.sub(r"\\(.)", r"\1", raw.strip("'"))
        found.add(raw)
    return {s for s in found if s}


def _pgpass_secrets() -> frozenset[str]:
    """Passwords of the libpq password file (cached until the file changes)."""
    global _pgpass_cache
    path = Path(os.environ.get("PGPASSFILE") or Path.home() / ".pgpass")
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return frozenset()
    key = (str(path), mtime)
    if _pgpass_cache is not None and _pgpass_cache[0] == key:
        return _pgpass_cache[1]
    secrets: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = re.split(r"(?<!\\):", line, maxsplit=4)
        if len(fields) == 5:
            secrets.add(fields[4].replace("\\:", ":").replace("\\\\", "\\"))
    _pgpass_cache = (key, frozenset(secrets))
    return _pgpass_cache[1]


def known_secrets() -> tuple[str, ...]:
    """Every secret to mask, longest first (so a secret containing another is masked whole)."""
    with _lock:
        secrets = set(_registered)
    for value in (os.environ.get("PGPASSWORD"), *_pgpass_secrets()):
        if value and len(value) >= MIN_SECRET:
            secrets.update({value, quote(value, safe="")})
    return tuple(sorted(secrets, key=len, reverse=True))


def redact_text(text: str, *, secrets: tuple[str, ...] | None = None) -> str:
    """``text`` with every password it holds replaced by ``***`` (``secrets``: ``known_secrets()``)."""
    if not text:
        return text
    for secret in known_secrets() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: T) -> T:
    """``value`` with every string inside it redacted: str, mappings, lists/tuples, frozen dataclasses."""
    return _redact(value, known_secrets())


def _redact(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact_text(value, secrets=secrets)
    if isinstance(value, Mapping):
        return {_redact(k, secrets): _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple) and not hasattr(value, "_fields"):
        return type(value)(_redact(v, secrets) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _redact(getattr(value, f.name), secrets) for f in dataclasses.fields(value) if f.init
        }
        return dataclasses.replace(value, **changes)
    return value


class RedactingFilter(logging.Filter):
    """Redacts a record's message (arguments merged in) and its formatted exception before any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logged as is rather than lost
            return True
        record.msg, record.args = redact_text(message), None
        if isinstance(record.exc_info, tuple) and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


_installed = False


def install_log_redaction() -> None:
    """Redact every log record created in this process from now on (idempotent).

    A record factory rather than a handler filter: it also covers handlers added later (Airflow's task log
    handlers, a CLI's) and records of every logger, whatever their propagation.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()
    redactor = RedactingFilter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redactor.filter(record)
        return record

    logging.setLogRecordFactory(factory)
