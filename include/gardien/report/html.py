"""Render a ReleaseReport as one self-contained, printable HTML page (inline CSS, no script, all escaped)."""

from __future__ import annotations

from gardien.report.html_changeset import changeset_html
from gardien.report.html_records import approvals_html, deployments_html, rollbacks_html, validations_html
from gardien.report.markup import CSS, Safe, badge, definitions, el, short, table
from gardien.report.model import ReleaseReport


def render_html(report: ReleaseReport) -> str:
    """The whole page. Every value from the ledger or the changeset is escaped (see markup.el)."""
    body = [
        el("h1", "Release report ", el("code", report.release_id), " ", _outcome_badge(report)),
        el("p", f"Generated {report.generated_at} · sources: {'; '.join(report.sources)}", cls="meta"),
        _alerts(report),
        el("h2", "Request"),
        _request(report),
        el("h2", "Changeset"),
        changeset_html(report.changeset),
        el("h2", "Validation (rehearsal before approval)"),
        validations_html(report.rehearsals, "No validation recorded."),
        el("h2", "Approvals"),
        approvals_html(report),
        el("h2", "Deployments"),
        deployments_html(report),
        el("h2", "Verification"),
        validations_html(report.verifications, "No verification recorded."),
        el("h2", "Rollbacks"),
        rollbacks_html(report),
        el("h2", "Outcome"),
        _outcome(report),
        el("h2", "Audit trail"),
        _trail(report),
    ]
    head = el(
        "head",
        Safe('<meta charset="utf-8">'),
        Safe('<meta name="viewport" content="width=device-width, initial-scale=1">'),
        el("title", f"Release {report.release_id} — Gardien report"),
        el("style", Safe(CSS)),
    )
    return "<!DOCTYPE html>\n" + el("html", head, el("body", body), lang="en") + "\n"


def _outcome_badge(report: ReleaseReport) -> Safe:
    o = report.outcome
    if not o.closed:
        return badge(f"NOT CLOSED ({o.outcome})", "info")
    return badge(o.outcome.upper().replace("_", " "), "ok" if o.ok else "bad")


def _alerts(report: ReleaseReport) -> Safe:
    if not report.alerts:
        return el(
            "p", "No alert: nothing refused, failed or unproven is recorded for this release.", cls="allclear"
        )
    return el("div", el("ul", [el("li", a.text, cls=a.level) for a in report.alerts]), cls="alerts")


def _request(report: ReleaseReport) -> Safe:
    r = report.request
    window = (
        f"{r.window_start} → {r.window_end}" if r.window_start or r.window_end else "none (outside windows)"
    )
    return definitions(
        [
            ("Requested by", r.requested_by),
            ("Reason", r.reason),
            ("Requested at", r.created_at),
            ("Release window", window),
            ("Release path", r.path_name or "—"),
            ("Path (as recorded)", " → ".join(r.path)),
            ("Status in the ledger", r.status),
            ("Current changeset", el("span", r.changeset_id or "—", cls="hash")),
        ]
    )


def _outcome(report: ReleaseReport) -> Safe:
    o = report.outcome
    return el("p", _outcome_badge(report), " ", o.detail, f" (closed {o.at})" if o.at else "")


def _trail(report: ReleaseReport) -> Safe:
    c = report.chain
    if c.ok:
        verdict = el(
            "p",
            badge("CHAIN INTACT", "ok"),
            f" verify_chain checked {c.checked} events of the whole ledger when this report was written.",
        )
    else:
        verdict = el("p", "AUDIT CHAIN BROKEN: ", c.broken or "", cls="unproven")
    anchor = el(
        "p",
        "Ledger head (publish it; later `gardien audit verify --anchor SEQ:HASH`): ",
        el("code", f"{c.head_seq}:{c.head_hash}", cls="hash"),
    )
    rows = [
        (
            e.seq,
            e.at,
            el("code", e.kind),
            e.actor,
            [
                short(e.subject) if e.subject and len(e.subject) == 64 else e.subject or "",
                el("div", e.reason, cls="small") if e.reason else None,
            ],
            el("span", " / ".join(x for x in (e.dag_id, e.run_id, e.task_id) if x) or "—", cls="small"),
            el("span", e.hash, cls="hash"),
        )
        for e in report.events
    ]
    return el(
        "div",
        verdict,
        anchor,
        table(["Seq", "At", "Kind", "Actor", "Subject / reason", "Airflow", "Hash"], rows),
    )
