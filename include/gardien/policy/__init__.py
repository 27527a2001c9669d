"""Who may approve a release: quorum, separation of duties, routing by content, votes bound to a changeset.

Pure: no Airflow, no database. The Airflow adapter (gardien.airflow.approval) and the CLI call these.
"""

from __future__ import annotations

from gardien.policy.config import (
    ApprovalPolicy,
    ApprovalPolicyConfig,
    RoutingRule,
    StageRule,
    parse_policy,
)
from gardien.policy.seats import Requirement, Seat, match_seats, requirement_for
from gardien.policy.votes import ApprovalVote, Decision, check_vote, evaluate

__all__ = [
    "ApprovalPolicy",
    "ApprovalPolicyConfig",
    "ApprovalVote",
    "Decision",
    "Requirement",
    "RoutingRule",
    "Seat",
    "StageRule",
    "check_vote",
    "evaluate",
    "match_seats",
    "parse_policy",
    "requirement_for",
]
