"""Unit tests for the pure Slack Block Kit builders (no network)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from gardien.notify import DriftItem, SlackMessage, TableCounts, ValidationFailure, escape, messages
from gardien.notify.blocks import MAX_BLOCKS, SECTION_LIMIT, link

HASH = "sha256:0123456789abcdef0123456789abcdef"
COUNTS = TableCounts.from_mapping(
    {"medicament": {"inserts": 2, "updates": 1}, "profil": {}, "droit": {"deletes": 1}}
)

# (builder, kwargs, facts the fallback text must carry)
CASES: list[tuple[Callable[..., SlackMessage], dict[str, Any], list[str]]] = [
    (
        messages.release_opened,
        dict(
            release_id="R-42",
            path=["qualif", "preprod", "prod"],
            changeset_hash=HASH,
            counts=COUNTS,
            window="Tue 2026-12-01 19:00",
            requester="alice",
        ),
        [
            "R-42",
            "qualif → preprod → prod",
            "0123456789ab",
            "2 inserts, 1 update, 1 delete in 2 tables",
            "Tue",
        ],
    ),
    (
        messages.validation_failed,
        dict(
            release_id="R-42",
            environment="preprod",
            failures=[ValidationFailure("medicament", "code_atc not null", ({"code_ucd": "3400891"},))],
            data_docs_url="http://airflow.local/docs/index.html",
        ),
        ["R-42", "validation failed on preprod", "1 failure", "medicament"],
    ),
    (
        messages.approval_requested,
        dict(
            release_id="R-42",
            changeset_hash=HASH,
            assigned_users=["bob", "carol"],
            groups=["pharmaciens"],
            required_action_url="http://airflow.local/required_actions",
            quorum=2,
        ),
        ["R-42", "0123456789ab", "2 approval(s)", "bob, carol"],
    ),
    (
        messages.approved,
        dict(release_id="R-42", by="bob", comment="ok pour moi"),
        ["R-42", "approved by bob", "ok"],
    ),
    (
        messages.rejected,
        dict(release_id="R-42", by="carol", reason="mauvaise posologie"),
        ["rejected by carol", "posologie"],
    ),
    (messages.rejected, dict(release_id="R-42", by=None, reason="no answer in 24h"), ["rejected by timeout"]),
    (
        messages.stage_deployed,
        dict(
            release_id="R-42", environment="prod", counts=COUNTS, drift_notes=["medicament 3400891 changed"]
        ),
        ["deployed to prod", "2 inserts", "1 drift note"],
    ),
    (
        messages.stage_verified,
        dict(release_id="R-42", environment="prod", checks=["fingerprint"]),
        ["verified on prod"],
    ),
    (
        messages.rollback,
        dict(release_id="R-42", environment="prod", reason="verification failed", restoration_proven=True),
        ["rolled back on prod", "restoration proven", "verification failed"],
    ),
    (
        messages.release_closed,
        dict(release_id="R-42", outcome="deployed", report_url="http://airflow.local/report/R-42"),
        ["R-42 closed: deployed"],
    ),
    (
        messages.drift_detected,
        dict(environment="prod", drifts=[DriftItem("medicament", 2), DriftItem("profil", 1)]),
        ["Drift detected on prod", "3 row(s)", "medicament, profil"],
    ),
    (
        messages.reconciled,
        dict(
            environment="prod",
            findings=["prod: apply dep-1 — alerted: no intent", "prod: apply dep-2 — recorded: late"],
            alerted=["prod: apply dep-1 — alerted: no intent"],
        ),
        ["ALERT", "1 change(s) on prod", "dep-1"],
    ),
    (
        messages.reconciled,
        dict(environment="prod", findings=["prod: apply dep-2 (release R-1) — recorded: late"], alerted=[]),
        ["recorded now", "dep-2", "R-1"],
    ),
]
IDS = [
    "release_opened",
    "validation_failed",
    "approval_requested",
    "approved",
    "rejected",
    "rejected_timeout",
    "stage_deployed",
    "stage_verified",
    "rollback_proven",
    "release_closed",
    "drift_detected",
    "reconciled_alert",
    "reconciled_late",
]


@pytest.mark.parametrize(("builder", "kwargs", "facts"), CASES, ids=IDS)
def test_builder_valid_input_text_fallback_carries_facts(
    builder: Callable[..., SlackMessage], kwargs: dict[str, Any], facts: list[str]
) -> None:
    msg = builder(**kwargs)
    for fact in facts:
        assert fact in msg.text


@pytest.mark.parametrize(("builder", "kwargs", "facts"), CASES, ids=IDS)
def test_builder_valid_input_blocks_are_well_formed(
    builder: Callable[..., SlackMessage], kwargs: dict[str, Any], facts: list[str]
) -> None:
    msg = builder(**kwargs)
    assert msg.blocks[0]["type"] == "header"
    assert 0 < len(msg.blocks) <= MAX_BLOCKS
    for block in msg.blocks:
        assert block["type"] in {"header", "section", "context", "divider"}
        if block["type"] == "section":
            assert len(block.get("text", {}).get("text", "")) <= SECTION_LIMIT
    json.dumps(msg.payload())  # what chat.postMessage will send must serialise


HOSTILE = "<!channel> & <http://evil.example|click me>"
HOSTILE_CASES = [
    (messages.approved, dict(release_id="R-1", by="bob", comment=HOSTILE)),
    (messages.rejected, dict(release_id="R-1", by=HOSTILE, reason=HOSTILE)),
    (
        messages.rollback,
        dict(release_id=HOSTILE, environment="prod", reason=HOSTILE, restoration_proven=False),
    ),
    (
        messages.release_opened,
        dict(
            release_id=HOSTILE,
            path=["qualif"],
            changeset_hash=HASH,
            counts=(),
            window=HOSTILE,
            requester=HOSTILE,
        ),
    ),
    (
        messages.validation_failed,
        dict(
            release_id="R-1",
            environment="prod",
            failures=[ValidationFailure(HOSTILE, HOSTILE, ({"code": HOSTILE},), HOSTILE)],
        ),
    ),
    (messages.stage_deployed, dict(release_id="R-1", environment="prod", counts=(), drift_notes=[HOSTILE])),
    (messages.release_closed, dict(release_id="R-1", outcome="failed", summary=HOSTILE)),
    (messages.drift_detected, dict(environment="prod", drifts=[DriftItem(HOSTILE, 1, ({"cle": HOSTILE},))])),
]


@pytest.mark.parametrize(
    ("builder", "kwargs"),
    HOSTILE_CASES,
    ids=[
        "approved",
        "rejected",
        "rollback",
        "release_opened",
        "validation_failed",
        "stage_deployed",
        "release_closed",
        "drift_detected",
    ],
)
def test_builder_user_text_with_control_characters_is_escaped(
    builder: Callable[..., SlackMessage], kwargs: dict[str, Any]
) -> None:
    msg = builder(**kwargs)
    blocks = json.dumps([dict(b) for b in msg.blocks], ensure_ascii=False)
    assert "<!channel>" not in blocks
    assert "<http://evil" not in blocks
    assert "&lt;!channel&gt; &amp; &lt;http://evil.example|click me&gt;" in blocks
    assert "<!channel>" not in msg.text
    assert "<http://evil" not in msg.text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a & b", "a &amp; b"),
        ("<@U123>", "&lt;@U123&gt;"),
        ("&amp;", "&amp;amp;"),
        ("plain *bold*", "plain *bold*"),
        (42, "42"),
    ],
    ids=["ampersand", "mention", "already_escaped_escaped_again", "mrkdwn_kept", "non_string"],
)
def test_escape_control_characters_replaced(raw: object, expected: str) -> None:
    assert escape(raw) == expected


@pytest.mark.parametrize(
    ("url", "label", "expected"),
    [
        ("http://a/x?p=1&q=2", "Docs", "<http://a/x?p=1&amp;q=2|Docs>"),
        ("http://a/x|y>z", "Docs", "<http://a/x%7Cy%3Ez|Docs>"),
        ("http://a/x y", "<b>", "<http://a/x%20y|&lt;b&gt;>"),
        (None, "No link", "No link"),
        ("", "A & B", "A &amp; B"),
    ],
    ids=["query_ampersand", "pipe_and_gt_encoded", "space_and_label_escaped", "no_url", "empty_url"],
)
def test_link_hostile_url_cannot_close_link_early(url: str | None, label: str, expected: str) -> None:
    assert link(url, label) == expected


@pytest.mark.parametrize(
    ("proven", "loud"),
    [(False, True), (True, False)],
    ids=["not_proven_manual_repair", "proven_quiet"],
)
def test_rollback_restoration_proof_manual_repair_flag(proven: bool, loud: bool) -> None:
    msg = messages.rollback(
        release_id="R-7", environment="prod", reason="verify failed", restoration_proven=proven
    )
    header_text = msg.blocks[0]["text"]["text"]
    assert (messages.MANUAL_REPAIR in msg.text) is loud
    assert (messages.MANUAL_REPAIR in header_text) is loud
    assert msg.text.startswith(messages.MANUAL_REPAIR) is loud


def test_validation_failed_more_than_top_lists_top_and_counts_rest() -> None:
    failures = [ValidationFailure(f"table_{i}", "rule") for i in range(7)]
    msg = messages.validation_failed(release_id="R-1", environment="preprod", failures=failures, top=5)
    listing = msg.blocks[2]["text"]["text"]
    assert "table_4" in listing
    assert "table_5" not in listing
    assert "… and 2 more" in listing
    assert "7 failure(s)" in msg.text


@pytest.mark.parametrize(
    ("url", "has_link"),
    [("http://gx.local/docs", True), (None, False)],
    ids=["with_data_docs", "without_data_docs"],
)
def test_validation_failed_data_docs_link_only_when_given(url: str | None, has_link: bool) -> None:
    msg = messages.validation_failed(
        release_id="R-1", environment="preprod", failures=[ValidationFailure("t", "r")], data_docs_url=url
    )
    rendered = json.dumps(msg.payload())
    assert ("<http://gx.local/docs|Open the Data Docs>" in rendered) is has_link


def test_validation_failed_natural_keys_are_shown() -> None:
    keys = ({"protocole": "CHIMIO-01", "rang": 2}, {"protocole": "CHIMIO-01", "rang": 3})
    msg = messages.validation_failed(
        release_id="R-1",
        environment="preprod",
        failures=[ValidationFailure("ligne_protocole", "dose > 0", keys)],
    )
    assert "(protocole=CHIMIO-01, rang=2) (protocole=CHIMIO-01, rang=3)" in msg.blocks[2]["text"]["text"]


def test_release_opened_counts_table_lists_only_changed_tables() -> None:
    msg = messages.release_opened(
        release_id="R-1", path=["qualif", "prod"], changeset_hash=HASH, counts=COUNTS
    )
    table = msg.blocks[2]["text"]["text"]
    assert "medicament" in table
    assert "droit" in table
    assert "profil" not in table


def test_approved_long_comment_is_truncated_within_section_limit() -> None:
    msg = messages.approved(release_id="R-1", by="bob", comment="x" * 10_000)
    assert all(len(b["text"]["text"]) <= SECTION_LIMIT for b in msg.blocks if b["type"] == "section")
    assert msg.blocks[-1]["text"]["text"].endswith("…")


def test_drift_detected_many_tables_caps_listing() -> None:
    drifts = [DriftItem(f"t{i}", 1) for i in range(15)]
    msg = messages.drift_detected(environment="prod", drifts=drifts)
    assert "… and 5 more tables" in msg.blocks[2]["text"]["text"]


def test_table_counts_negative_count_raises() -> None:
    with pytest.raises(ValueError, match="negative row count for table 'medicament'"):
        TableCounts("medicament", inserts=-1)


def test_slack_message_payload_round_trip_is_identity() -> None:
    msg = messages.approved(release_id="R-1", by="bob", comment="ok")
    assert SlackMessage.from_payload(json.loads(json.dumps(msg.payload()))) == msg


def test_notify_import_does_not_import_airflow() -> None:
    code = "import sys, gardien.notify; sys.exit(1 if 'airflow' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
