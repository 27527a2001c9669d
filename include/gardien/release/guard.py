"""The production guard of applies outside a release: only a changeset an approved release carries, or break-glass."""

from __future__ import annotations

from gardien import ledger
from gardien.changeset import Changeset
from gardien.config import Environment, GardienConfig
from gardien.errors import ApprovalError, UsageError
from gardien.release.manual import Operator, ledger_session
from gardien.release.paths import parse_release_paths


def check_production_apply(
    config: GardienConfig, env: Environment, changeset: Changeset, *, operator: Operator
) -> ledger.Release | None:
    """The release that approved ``changeset`` for ``env`` now; None when ``env`` is not production, or on
    break-glass (reason mandatory). Raises ApprovalError naming why no release qualifies (nothing applied)."""
    if not env.production:
        return None
    if operator.break_glass:
        if not (operator.reason or "").strip():
            raise UsageError(
                '--break-glass needs --reason "...": say why production cannot wait for a release.'
            )
        return None
    from gardien.policy import ApprovalVote, evaluate, parse_policy, requirement_for

    tables = [t.name for t in config.catalog.tables]
    policy = parse_policy(config.approvals, source=config.source_path or "configuration", known_tables=tables)
    paths = parse_release_paths(
        config.release_paths, environments=config.environments, source=config.source_path or "configuration"
    )
    touched = sorted(t for t, c in changeset.counts().items() if sum(c.values()))
    refusals: list[str] = []
    with ledger_session(config) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT id FROM ledger.releases WHERE changeset_id = %s AND %s = ANY(path) ORDER BY created_at DESC",
                (changeset.id, env.name),
            )
            ids = [r[0] for r in cur.fetchall()]
        histories = [ledger.release_history(conn, rid) for rid in ids]
    for history in histories:
        rel = history.release
        path = paths.get(rel.path[0])
        emergency = bool(path and path.emergency)
        if emergency and rel.window_start is None:
            window_open = True
        else:
            window_open = (
                rel.window_start is not None
                and rel.window_end is not None
                and rel.window_start <= operator.now < rel.window_end
            )
        if not window_open:
            refusals.append(f"{rel.id}: its window ({rel.window_start} – {rel.window_end}) is not open now")
            continue
        requirement = requirement_for(
            policy,
            environment=env.name,
            tables_touched=touched,
            requester=rel.requested_by,
            emergency=emergency,
            reason=rel.reason,
        )
        votes = [
            ApprovalVote(user=a.approver, approve=a.decision == "approved", changeset_id=a.changeset_id)
            for a in history.approvals
        ]
        decision = evaluate(requirement, votes, changeset_id=changeset.id)
        if decision.state == "approved":
            return rel
        missing = ", ".join(s.title for s in decision.missing)
        refusals.append(f"{rel.id}: {decision.state}" + (f" (missing: {missing})" if missing else ""))
    why = "; ".join(refusals) if refusals else "no release in the ledger carries it for this environment"
    raise ApprovalError(
        f"{env.name} is a production target: changeset {changeset.id[:12]} is not approved for it ({why}). "
        "Nothing was applied. Deploy it through a release, or, if production cannot wait, use --break-glass "
        '--reason "..." (recorded in the ledger and announced).'
    )
