"""Every release event kind maps to a meaningful Slack message (pure: no network, no database)."""

from __future__ import annotations

import pytest

from gardien.config import load_config
from gardien.release import slack_glue
from gardien.release.service import ReleaseService

CASES = [
    (
        "release_opened",
        {"changeset_id": "ab" * 32, "counts": {"medicament": {"inserts": 1, "updates": 0, "deletes": 0}}},
        "opened: qualif → preprod → prod",
    ),
    ("release_empty", {}, "closed: empty"),
    ("validation_failed", {"detail": "duplicate natural key"}, "validation failed"),
    ("approved", {"approvers": ["chef.projet", "pharma.chef"]}, "approved by chef.projet, pharma.chef"),
    ("rejected", {"by": "rssi", "reason": "droits trop larges"}, "rejected by rssi: droits trop larges"),
    (
        "stage_deployed",
        {"environment": "prod", "result": {"counts": {"t": {"inserts": 2, "updates": 0, "deletes": 0}}}},
        "deployed to prod",
    ),
    (
        "deployment_failed",
        {"environment": "prod", "detail": "conflict"},
        "deployment refused, nothing applied",
    ),
    (
        "stage_verified",
        {"environment": "preprod", "result": {"fingerprint": "f" * 64}},
        "verified on preprod",
    ),
    ("verification_failed", {"environment": "prod", "detail": "probe"}, "validation failed on prod"),
    ("rollback", {"environment": "prod", "reason": "verify failed", "proven": True}, "restoration proven"),
    ("rollback", {"environment": "prod", "reason": "verify failed", "proven": False}, "MANUAL REPAIR NEEDED"),
    (
        "release_closed",
        {"outcome": {"outcome": "released", "detail": "ok"}, "report": "r.html"},
        "closed: released",
    ),
    (
        "drift_detected",
        {"environment": "prod", "tables": {"medicament": [{"code_ucd": "3400890010078"}]}},
        "Drift detected on prod",
    ),
]


@pytest.fixture(scope="module")
def svc() -> ReleaseService:
    return ReleaseService(load_config("include/config/gardien.yaml"), "standard")


@pytest.mark.parametrize(
    ("kind", "data", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_build_each_kind_gives_message_text(
    svc: ReleaseService, kind: str, data: dict, expected: str
) -> None:
    message = slack_glue.build(svc, kind, {"release_id": "R-1", **data})
    assert expected in message.text
    assert message.blocks


def test_build_unknown_kind_gives_none(svc: ReleaseService) -> None:
    assert slack_glue.build(svc, "nothing_to_say", {"release_id": "R-1"}) is None
