"""The records part of the HTML report: validations, approvals, deployments and rollbacks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gardien.report.markup import Safe, badge, definitions, el, esc, short, table, value
from gardien.report.model import DeploymentLine, ReleaseReport, ValidationRun


def validations_html(runs: tuple[ValidationRun, ...], empty: str) -> Safe:
    if not runs:
        return el("p", empty, cls="meta")
    return el("div", [_validation(v) for v in runs])


def _validation(v: ValidationRun) -> Safe:
    verdict = badge("PASSED", "ok") if v.passed else badge("FAILED", "bad")
    stale = None if v.current_changeset else badge("earlier changeset", "warn")
    out: list[Any] = [el("h3", f"{v.environment} ", verdict, " ", stale)]
    items: list[tuple[str, Any]] = [
        ("When / by", f"{v.at} · {v.actor}"),
        ("Summary", v.summary),
        ("Changeset", short(v.changeset_id)),
    ]
    if v.fingerprint:
        items.append(("Fingerprints", _kv(v.fingerprint)))
    if v.data_docs_path:
        link = el("a", "Data Docs", href=v.data_docs_href) if v.data_docs_href else None
        items.append(("Data Docs", [link, " ", el("span", v.data_docs_path, cls="small hash")]))
    out.append(definitions(items))
    if v.problems:
        out.append(
            table(
                ["Expectation", "Table", "Status", "Rows", "Failing examples / error"],
                [
                    (
                        e.name,
                        e.table or "—",
                        badge(e.status.upper(), "bad" if e.status == "failed" else "warn"),
                        e.unexpected_count,
                        [
                            el("div", e.message) if e.message else None,
                            el("div", "error: ", e.error) if e.error else None,
                            el("ul", [el("li", _example(x)) for x in e.examples], cls="kv")
                            if e.examples
                            else None,
                        ],
                    )
                    for e in v.problems
                ],
            )
        )
    for error in v.errors:
        out.append(el("p", "could not run: ", error, cls="small"))
    for note in v.notes:
        out.append(el("p", "note: ", note, cls="small"))
    if v.passed_names:
        out.append(el("p", f"Passed ({len(v.passed_names)}): ", ", ".join(v.passed_names), cls="small"))
    return el("div", out)


def _example(x: Any) -> Safe:
    if isinstance(x, Mapping):
        return el("span", ", ".join(f"{k}={x[k]}" for k in sorted(x, key=str)))
    return esc(x)


def _kv(data: Mapping[str, Any]) -> Safe:
    return el(
        "ul",
        [el("li", el("code", k), ": ", el("span", str(v), cls="hash")) for k, v in sorted(data.items())],
        cls="kv",
    )


def approvals_html(report: ReleaseReport) -> Safe:
    out: list[Any] = []
    for j in report.rejections:
        who = f" by {j.by}" if j.by else ""
        out.append(
            el(
                "p",
                f"REJECTED{who} at {j.at}: ",
                el("strong", j.reason),
                f" (recorded by {j.recorded_by}, {j.source})",
                cls="unproven",
            )
        )
    if report.approvals:
        out.append(
            table(
                ["Approver", "Decision", "When", "Bound changeset", "Comment / reason"],
                [
                    (
                        f"{a.approver} ({a.role})" if a.role else a.approver,
                        badge(a.decision.upper(), "ok" if a.decision == "approved" else "bad"),
                        a.at,
                        [
                            short(a.changeset_id),
                            " ",
                            badge("VOID: earlier changeset", "warn") if a.void else None,
                        ],
                        a.comment or "—",
                    )
                    for a in report.approvals
                ],
            )
        )
    elif not report.rejections:
        out.append(el("p", "No approval recorded.", cls="meta"))
    return el("div", out)


def deployments_html(report: ReleaseReport) -> Safe:
    out: list[Any] = [_deployment(d) for d in report.deployments]
    for r in report.refused_deployments:
        label = "CONFLICT" if r.kind == "conflict" else "FAILED"
        out.append(
            el(
                "p",
                f"{label} on {r.environment} at {r.at} ({r.actor}): nothing applied. ",
                r.reason or "",
                cls="unproven",
            )
        )
    if not out:
        out.append(el("p", "Nothing deployed.", cls="meta"))
    return el("div", out)


def _deployment(d: DeploymentLine) -> Safe:
    stage = f"stage {d.stage} · " if d.stage else ""
    status_kind = {"verified": "ok", "applied": "info", "rolled_back": "warn"}.get(d.status, "bad")
    items: list[tuple[str, Any]] = [
        ("When / by", f"{d.at} · {d.actor}"),
        ("Target deployment id", d.target_deployment_id or "—"),
        ("Apply", d.apply_status or "—"),
        ("Fingerprint before", el("span", d.fingerprint_before or "—", cls="hash")),
        ("Fingerprint after", el("span", d.fingerprint_after or "—", cls="hash")),
        ("Equals the source", {True: "yes", False: "NO", None: "—"}[d.matches_source]),
    ]
    if d.counts is None:
        counts: Any = el(
            "span", "not in the ledger (the deployment artifact was not found); see the changeset", cls="null"
        )
    else:
        counts = "; ".join(
            f"{t}: {c.get('inserts', 0)} inserted, {c.get('updates', 0)} updated, {c.get('deletes', 0)} deleted"
            for t, c in sorted(d.counts.items())
        )
    items.append(("Counts", counts or "none"))
    if d.drift is None:
        items.append(
            (
                "Drift notes",
                el("span", "not in the ledger; the deployment artifact was not found", cls="null"),
            )
        )
    elif d.drift:
        items.append(("Drift notes", el("ul", [el("li", _drift(n)) for n in d.drift], cls="kv")))
    else:
        items.append(("Drift notes", "none"))
    if d.history:
        items.append(
            (
                "Status changes",
                el(
                    "ul",
                    [
                        el(
                            "li",
                            f"{h.at} · {h.actor}: {h.before} → {h.after}",
                            f" — {h.reason}" if h.reason else "",
                        )
                        for h in d.history
                    ],
                    cls="kv",
                ),
            )
        )
    return el(
        "div",
        el("h3", f"{stage}{d.environment} ", badge(d.status.upper().replace("_", " "), status_kind)),
        definitions(items),
    )


def _drift(n: Mapping[str, Any]) -> Safe:
    key = n.get("key")
    label = value(key) if isinstance(key, list) else esc(key)
    return el(
        "span",
        el("code", n.get("table")),
        " ",
        label,
        " ",
        el("code", n.get("field")),
        ": baseline ",
        value(n.get("baseline")),
        ", found ",
        value(n.get("now")),
        ", wanted ",
        value(n.get("wanted")),
    )


def rollbacks_html(report: ReleaseReport) -> Safe:
    if not report.rollbacks:
        return el("p", "No rollback.", cls="meta")
    out = []
    for r in report.rollbacks:
        where = r.environment or f"deployment {r.deployment_id}"
        if r.proven:
            head = el(
                "p",
                badge("PROVEN", "ok"),
                f" Rollback of {where}: restoration proven (the scope equals its pre-deployment fingerprint).",
            )
            cls = "proven"
        else:
            head = el(
                "p",
                f"NOT PROVEN — MANUAL REPAIR NEEDED: the rollback of {where} could not be shown to restore the previous state.",
            )
            cls = "unproven"
        items = [
            ("When / by", f"{r.at} · {r.actor}"),
            ("Why", r.reason),
            ("Expected fingerprint", el("span", r.fingerprint_expected or "—", cls="hash")),
            ("Restored fingerprint", el("span", r.fingerprint_restored or "—", cls="hash")),
        ]
        out.append(el("div", head, definitions(items), cls=cls))
    return el("div", out)
