"""One redaction for every message: a corpus of passwords in every form a DSN or libpq can show them."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import quote

import psycopg2
import psycopg2.extensions
import pytest

from gardien import redact as redaction
from gardien.redact import MASK, RedactingFilter, redact, redact_text, register_dsn

PASSWORDS = [
    "Pa%zz word9",  # '%' not followed by hex: libpq echoes the raw token
    "Sec ret9Zq",  # a space: redacted only up to the space before
    "s3cr'et Qx",  # single quote
    'dq"uote7x',  # double quote
    "pässwörd€ß",  # unicode
    "back\\slash9",  # backslash
    "p@ss:w/rd7",  # URI delimiters (only valid percent-encoded in a URI)
    "%41%42lit",  # looks percent-encoded already
]
IDS = [
    "percent",
    "space",
    "single-quote",
    "double-quote",
    "unicode",
    "backslash",
    "delimiters",
    "pct-literal",
]


def _kv_quote(pw: str) -> str:
    return "'" + pw.replace("\\", "\\\\").replace("'", "\\'") + "'"


def forms(pw: str) -> dict[str, str]:
    out = {
        "uri-encoded": f"postgresql://gardien:{quote(pw, safe='')}@db.example:5432/gardien_ledger",
        "uri-query": f"postgresql://gardien@db.example/gardien_ledger?password={quote(pw, safe='')}&sslmode=require",
        "key-value-quoted": f"host=db.example user=gardien password={_kv_quote(pw)} dbname=gardien_ledger",
    }
    if not set(pw) & set("@/"):
        out["uri-raw"] = f"postgresql://gardien:{pw}@db.example:5432/gardien_ledger"
    if not set(pw) & set(" '\"\\"):
        out["key-value-bare"] = f"host=db.example user=gardien password={pw} dbname=gardien_ledger"
    return out


def messages(dsn: str) -> list[str]:
    """What Gardien may say about ``dsn``: the DSN in a sentence, and whatever libpq answers when parsing it."""
    said = [f"cannot connect to PostgreSQL at {dsn}: connection refused", repr(dsn)]
    try:
        psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.Error as exc:
        said.append(f"target preprod refused the changes ({str(exc).strip()})")
    return said


def assert_no_leak(pw: str, text: str) -> None:
    pieces = {pw, quote(pw, safe=""), *(p for p in re.split(r"[\s'\"\\]+", pw) if len(p) >= 4)}
    leaked = [p for p in pieces if p in text]
    assert not leaked, f"{leaked} in {text!r}"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(redaction, "_registered", set())
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "absent"))


@pytest.mark.parametrize("pw", PASSWORDS, ids=IDS)
def test_patterns_alone_mask_every_form_and_libpq_echo(pw: str) -> None:
    """Even a DSN Gardien never saw (no registration): the patterns suffice."""
    for form, dsn in forms(pw).items():
        for message in messages(dsn):
            out = redact_text(message)
            assert_no_leak(pw, out)
            assert MASK in out, (form, message)


def test_libpq_percent_echo_is_masked_whole() -> None:
    dsn = "postgresql://gardien:Pa%zz word9@db.example:5432/gardien_ledger"
    with pytest.raises(psycopg2.Error) as err:
        psycopg2.extensions.parse_dsn(dsn)
    assert 'invalid percent-encoded token: "Pa%zz word9"' in str(err.value)  # the echo exists

    assert redact_text(str(err.value)).strip() == 'invalid dsn: invalid percent-encoded token: "***"'


def test_quoted_key_value_password_with_spaces_is_masked_to_its_closing_quote() -> None:
    out = redact_text("cannot connect to host=h password='Sec ret9Zq \\' more' dbname=d: refused")
    assert out == "cannot connect to host=h password=*** dbname=d: refused"


@pytest.mark.parametrize("pw", PASSWORDS, ids=IDS)
def test_registered_password_is_masked_wherever_it_appears(pw: str) -> None:
    register_dsn(forms(pw)["key-value-quoted"])
    text = f"psql said: FATAL password authentication failed ({pw}) / {quote(pw, safe='')}"
    assert_no_leak(pw, redact_text(text))


def test_pgpassword_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "Env Secret 42")
    assert (
        redact_text("environment: PGPASSWORD=Env Secret 42 HOME=/x") == "environment: PGPASSWORD=*** HOME=/x"
    )
    assert_no_leak("Env Secret 42", redact_text("the value Env Secret 42 appeared in a message"))


def test_pgpass_passwords_are_masked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pgpass = tmp_path / ".pgpass"
    pgpass.write_text("# comment\ndb.example:5432:*:gardien:Colon\\:Pass 7\n*:*:*:*:wild-Card-99\n")
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    out = redact_text("tried Colon:Pass 7 then wild-Card-99")
    assert out == f"tried {MASK} then {MASK}"


def test_redact_walks_payloads_and_dataclasses() -> None:
    from gardien.notify.blocks import SlackMessage

    register_dsn("postgresql://u:Walk3rPass@h/d")
    message = SlackMessage(
        text="failed: Walk3rPass", blocks=({"type": "section", "text": {"text": "x Walk3rPass"}},)
    )
    clean = redact(message)
    assert "Walk3rPass" not in repr(clean) and isinstance(clean, SlackMessage)
    assert redact({"a": ["Walk3rPass", 1, None], "b": ("Walk3rPass",)}) == {
        "a": [MASK, 1, None],
        "b": (MASK,),
    }


def test_logging_filter_masks_message_arguments_and_exceptions() -> None:
    register_dsn("host=h password='Log Pass 77'")
    import sys

    try:
        raise RuntimeError("connect failed for password='Log Pass 77'")
    except RuntimeError:
        record = logging.getLogger("t").makeRecord(
            "t",
            logging.ERROR,
            __file__,
            1,
            "dsn %s",
            ("host=h password='Log Pass 77'",),
            exc_info=sys.exc_info(),
        )
    RedactingFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert "Log Pass" not in formatted and MASK in formatted


def test_short_secrets_are_left_to_the_patterns() -> None:
    register_dsn("postgresql://u:abc@h/d")
    assert redact_text("abc is a common word") == "abc is a common word"
    assert redact_text("postgresql://u:abc@h/d") == "postgresql://u:***@h/d"
