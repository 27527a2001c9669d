"""The local fingerprint's row: stored values where equality is identity, text everywhere else."""

from __future__ import annotations

import pytest

from gardien.fingerprint import _local_column


def _kind(typ: str) -> str:
    text = repr(_local_column("c", typ))
    if "::text" in text:
        return "as text"
    return "bytewise" if 'COLLATE "C"' in text else "stored"


@pytest.mark.parametrize(
    ("typ", "kind"),
    [
        ("integer", "stored"),
        ("bigint", "stored"),
        ("boolean", "stored"),
        ("numeric(12,3)", "stored"),
        ("timestamp with time zone", "stored"),
        ("timestamp(3) without time zone", "stored"),
        ("text", "bytewise"),
        ("character varying(40)", "bytewise"),
        # Equal but not identical values exist for these (1.0/1.00, -0/0, '1 day'/'24 hours', padding):
        # hashed through their text form, so a restoration to an equal-but-different value is caught.
        ("numeric", "as text"),
        ("double precision", "as text"),
        ("interval", "as text"),
        ("jsonb", "as text"),
        ("character(3)", "as text"),
    ],
)
def test_local_column_rendering(typ, kind):
    assert _kind(typ) == kind
