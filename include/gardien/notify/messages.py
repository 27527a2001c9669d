"""Pure Block Kit builders for every release event Gardien announces in Slack (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence

from gardien.notify.blocks import (
    SlackMessage,
    context,
    divider,
    escape,
    fields,
    header,
    link,
    message,
    one_line,
    section,
)
from gardien.notify.events import (
    DriftItem,
    TableCounts,
    ValidationFailure,
    counts_summary,
    counts_table,
    keys_text,
    short_hash,
)

MANUAL_REPAIR = "MANUAL REPAIR NEEDED"
# Outcomes a release can close with, and the emoji a channel reader scans for.
_OUTCOME_EMOJI = {
    "deployed": ":white_check_mark:",
    "rejected": ":no_entry:",
    "rolled_back": ":leftwards_arrow_with_hook:",
    "failed": ":x:",
    "cancelled": ":heavy_minus_sign:",
}


def release_opened(
    *,
    release_id: str,
    path: Sequence[str],
    changeset_hash: str,
    counts: Sequence[TableCounts],
    window: str | None = None,
    requester: str | None = None,
) -> SlackMessage:
    """A release was opened: where it goes, in which window, and what it changes per table."""
    route = " → ".join(path)
    summary = counts_summary(counts)
    text = f"Release {release_id} opened: {route}; changeset {short_hash(changeset_hash)}; {summary}"
    if window:
        text += f"; window {window}"
    pairs = [
        ("Release", f"`{escape(release_id)}`"),
        ("Path", escape(route)),
        ("Window", escape(window) if window else "_next open window_"),
        ("Changeset", f"`{escape(short_hash(changeset_hash))}`"),
    ]
    if requester:
        pairs.append(("Requested by", escape(requester)))
    blocks = [
        header(":package: Release opened"),
        fields(pairs),
        section(f"*{escape(summary)}*\n{counts_table(counts)}"),
    ]
    return message(escape(text), blocks)


def validation_failed(
    *,
    release_id: str,
    environment: str,
    failures: Sequence[ValidationFailure],
    data_docs_url: str | None = None,
    top: int = 5,
) -> SlackMessage:
    """Validation failed: the first ``top`` failures with table and natural keys, and the Data Docs link."""
    total = len(failures)
    text = f"Release {release_id}: validation failed on {environment} ({total} failure(s))"
    if failures:
        first = failures[0]
        text += f"; first: {first.table}: {one_line(first.rule)}"
    lines = []
    for f in failures[:top]:
        line = f"• *{escape(f.table)}* — {escape(one_line(f.rule))}"
        if f.keys:
            line += f"\n   rows: `{escape(keys_text(f.keys))}`"
        if f.detail:
            line += f"\n   {escape(one_line(f.detail))}"
        lines.append(line)
    if total > top:
        lines.append(f"… and {total - top} more")
    blocks = [
        header(":x: Validation failed"),
        section(
            f"Release `{escape(release_id)}` on *{escape(environment)}*: {total} failure(s). "
            "The release stops here."
        ),
        section("\n".join(lines) if lines else "_no failure detail was provided_"),
    ]
    if data_docs_url:
        blocks.append(context(link(data_docs_url, "Open the Data Docs")))
    return message(escape(text), blocks)


def approval_requested(
    *,
    release_id: str,
    changeset_hash: str,
    assigned_users: Sequence[str],
    groups: Sequence[str],
    required_action_url: str | None,
    quorum: int = 1,
    requester: str | None = None,
) -> SlackMessage:
    """Approval is requested: who may answer, which groups are required, and where to answer."""
    who = ", ".join(assigned_users) or "nobody assigned"
    text = (
        f"Release {release_id} (changeset {short_hash(changeset_hash)}) awaits {quorum} approval(s) "
        f"from: {who}"
    )
    pairs = [
        ("Release", f"`{escape(release_id)}`"),
        ("Changeset", f"`{escape(short_hash(changeset_hash))}`"),
        ("Assigned", escape(who)),
        ("Groups required", escape(", ".join(groups)) if groups else "_none_"),
        ("Quorum", str(quorum)),
    ]
    if requester:
        pairs.append(("Requested by (cannot approve)", escape(requester)))
    blocks = [
        header(":raising_hand: Approval requested"),
        fields(pairs),
        section(link(required_action_url, "Answer the Required Action in Airflow")),
        context("An approval is bound to this changeset hash; any change to the changeset voids it."),
    ]
    return message(escape(text), blocks)


def approved(
    *,
    release_id: str,
    by: str,
    comment: str | None = None,
    changeset_hash: str | None = None,
) -> SlackMessage:
    """Someone approved the release, with their comment."""
    text = f"Release {release_id} approved by {by}"
    body = f"Release `{escape(release_id)}` approved by *{escape(by)}*"
    if changeset_hash:
        body += f" for changeset `{escape(short_hash(changeset_hash))}`"
    blocks = [header(":white_check_mark: Approved"), section(body)]
    if comment:
        text += f": {one_line(comment)}"
        blocks.append(section(f">{escape(one_line(comment))}"))
    return message(escape(text), blocks)


def rejected(*, release_id: str, by: str | None, reason: str) -> SlackMessage:
    """The release was rejected (``by=None`` means the approval timed out, which counts as a rejection)."""
    who = by or "timeout"
    text = f"Release {release_id} rejected by {who}: {one_line(reason)}"
    blocks = [
        header(":no_entry: Rejected"),
        section(f"Release `{escape(release_id)}` rejected by *{escape(who)}*. The release ends here."),
        section(f"*Reason*\n>{escape(one_line(reason))}"),
    ]
    return message(escape(text), blocks)


def stage_deployed(
    *,
    release_id: str,
    environment: str,
    counts: Sequence[TableCounts],
    drift_notes: Sequence[str] = (),
) -> SlackMessage:
    """A stage was deployed: what was applied, and any production drift noticed on the way."""
    summary = counts_summary(counts)
    text = f"Release {release_id} deployed to {environment}: {summary}"
    blocks = [
        header(":rocket: Stage deployed"),
        section(f"Release `{escape(release_id)}` deployed to *{escape(environment)}*: {escape(summary)}"),
        section(counts_table(counts)),
    ]
    if drift_notes:
        text += f"; {len(drift_notes)} drift note(s)"
        notes = "\n".join(f"• {escape(one_line(n))}" for n in drift_notes[:10])
        if len(drift_notes) > 10:
            notes += f"\n… and {len(drift_notes) - 10} more"
        blocks.append(section(f":warning: *Drift noticed*\n{notes}"))
    return message(escape(text), blocks)


def stage_verified(
    *,
    release_id: str,
    environment: str,
    checks: Sequence[str] = (),
    fingerprint: str | None = None,
) -> SlackMessage:
    """A deployed stage passed verification."""
    text = f"Release {release_id} verified on {environment}"
    body = f"Release `{escape(release_id)}` verified on *{escape(environment)}*"
    if fingerprint:
        body += f" (fingerprint `{escape(short_hash(fingerprint))}`)"
    blocks = [header(":heavy_check_mark: Stage verified"), section(body)]
    if checks:
        blocks.append(context(escape("; ".join(one_line(c) for c in checks))))
    return message(escape(text), blocks)


def rollback(
    *,
    release_id: str,
    environment: str,
    reason: str,
    restoration_proven: bool,
    detail: str | None = None,
) -> SlackMessage:
    """A stage was rolled back; an unproven restoration is announced as a manual repair, loudly."""
    if restoration_proven:
        title = ":leftwards_arrow_with_hook: Rolled back (restoration proven)"
        text = (
            f"Release {release_id} rolled back on {environment}; restoration proven. Why: {one_line(reason)}"
        )
        verdict = "*Restoration proven:* yes — the managed scope equals its pre-deployment state."
    else:
        title = f":rotating_light: {MANUAL_REPAIR}: rollback not proven"
        text = (
            f"{MANUAL_REPAIR}: release {release_id} rollback on {environment} is NOT proven. "
            f"Why: {one_line(reason)}"
        )
        verdict = (
            f":rotating_light: *{MANUAL_REPAIR}* — restoration proven: *no*. The managed scope on "
            f"*{escape(environment)}* does not match its pre-deployment state; do not deploy further."
        )
    blocks = [
        header(title),
        section(
            f"Release `{escape(release_id)}` on *{escape(environment)}*\n*Why:* {escape(one_line(reason))}"
        ),
        section(verdict),
    ]
    if detail:
        blocks.append(context(escape(one_line(detail))))
    return message(escape(text), blocks)


def release_closed(
    *,
    release_id: str,
    outcome: str,
    report_url: str | None = None,
    summary: str | None = None,
) -> SlackMessage:
    """The release is closed with its final outcome and a link to the release report."""
    emoji = _OUTCOME_EMOJI.get(outcome, ":information_source:")
    text = f"Release {release_id} closed: {outcome}"
    body = f"Release `{escape(release_id)}` closed: *{escape(outcome)}*"
    if summary:
        text += f" ({one_line(summary)})"
        body += f"\n{escape(one_line(summary))}"
    blocks = [header(f"{emoji} Release closed"), section(body)]
    if report_url:
        blocks.append(divider())
        blocks.append(context(link(report_url, "Release report")))
    return message(escape(text), blocks)


def drift_detected(
    *,
    environment: str,
    drifts: Sequence[DriftItem],
    release_id: str | None = None,
) -> SlackMessage:
    """Someone changed managed configuration directly in an environment."""
    rows = sum(d.rows for d in drifts)
    tables = ", ".join(d.table for d in drifts)
    text = f"Drift detected on {environment}: {rows} row(s) in {tables or 'no table'}"
    if release_id:
        text += f" (release {release_id})"
    lines = []
    for d in drifts[:10]:
        line = f"• *{escape(d.table)}*: {d.rows} row(s)"
        if d.keys:
            line += f" `{escape(keys_text(d.keys))}`"
        lines.append(line)
    if len(drifts) > 10:
        lines.append(f"… and {len(drifts) - 10} more tables")
    blocks = [
        header(":warning: Drift detected"),
        section(
            f"Managed configuration on *{escape(environment)}* differs from what Gardien recorded"
            + (f" (release `{escape(release_id)}`)" if release_id else "")
            + "."
        ),
        section("\n".join(lines) if lines else "_no rows listed_"),
    ]
    return message(escape(text), blocks)


def reconciled(*, environment: str, findings: Sequence[str], alerted: Sequence[str]) -> SlackMessage:
    """Target journal rows the ledger did not record, found by reconciliation: recorded late, or (``alerted``)
    changes no intent and no release explains — someone changed the target outside Gardien's recorded paths."""
    late = [f for f in findings if f not in alerted]
    if alerted:
        title = f":rotating_light: {len(alerted)} change(s) on {environment} with no ledger record"
        text = (
            f"ALERT: {len(alerted)} change(s) on {environment} that no Gardien intent or release explains; "
            f"find out who made them. {one_line(alerted[0])}"
        )
    else:
        title = f":warning: {len(late)} change(s) on {environment} recorded late"
        text = f"{len(late)} change(s) on {environment} committed but never recorded: recorded now. {one_line(late[0])}"
    blocks = [header(title)]
    for label, items in (("Not explained (ALERT)", alerted), ("Recorded late", late)):
        if items:
            lines = "\n".join(f"• {escape(one_line(i))}" for i in items[:10])
            if len(items) > 10:
                lines += f"\n… and {len(items) - 10} more"
            blocks.append(section(f"*{label}:*\n{lines}"))
    blocks.append(context(escape("Recorded in the ledger; `gardien audit verify` lists them too.")))
    return message(escape(text), blocks)
