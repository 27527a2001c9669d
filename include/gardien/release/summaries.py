"""One human paragraph per release step, for the task logs (what happened, to what, with which ids). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def counts_line(counts: Mapping[str, Mapping[str, int]] | None) -> str:
    """``medicament +1 ~0 −0; regle_alerte_dose +1 ~1 −0`` (tables without a change left out)."""
    parts = [
        f"{table} +{c.get('inserts', 0)} ~{c.get('updates', 0)} −{c.get('deletes', 0)}"
        for table, c in sorted((counts or {}).items())
        if sum(c.values())
    ]
    return "; ".join(parts) or "no row changed"


def opened(*, release_id: str, path: Sequence[str], requested_by: str, window: str, page: str) -> str:
    return (
        f"Release {release_id} opened: {' → '.join(path)}, requested by {requested_by}, window {window}. "
        f"Release page: {page}"
    )


def extracted(*, release_id: str, result: Mapping[str, Any], source: str, target: str) -> str:
    counts = result.get("counts") or {}
    total = sum(sum(c.values()) for c in counts.values())
    return (
        f"Release {release_id}: changeset {str(result.get('changeset_id'))[:12]} captured {source} → {target}, "
        f"{total} row change(s): {counts_line(counts)}"
    )


def validated(*, release_id: str, result: Mapping[str, Any]) -> str:
    tables = ", ".join(result.get("tables") or []) or "none"
    return (
        f"Release {release_id}: rehearsal validated — {result.get('summary') or 'passed'}; "
        f"tables checked: {tables}"
    )


def deployed(*, release_id: str, environment: str, result: Mapping[str, Any]) -> str:
    drift = result.get("drift") or []
    return (
        f"Release {release_id} deployed to {environment} ({result.get('status')}): "
        f"{counts_line(result.get('counts'))}. Target deployment id {result.get('deployment_id')} "
        f"(ledger #{result.get('ledger_deployment_id')}); fingerprint {str(result.get('fingerprint_before'))[:16]} "
        f"→ {str(result.get('fingerprint_after'))[:16]}"
        + (f"; equals the source: {'yes' if result.get('matches_source') else 'NO'}")
        + (f"; {len(drift)} tolerated drift note(s)" if drift else "")
    )


def verified(*, release_id: str, environment: str, result: Mapping[str, Any]) -> str:
    checked = [f"{result.get('summary') or str(result.get('checked')) + ' expectations passed'}"]
    if result.get("tables"):
        checked.append(f"tables {', '.join(result['tables'])}")
    if result.get("probes"):
        checked.append(f"smoke probes {', '.join(result['probes'])}")
    fingerprint = result.get("fingerprint")
    if fingerprint:
        checked.append(f"touched scope fingerprint {str(fingerprint)[:16]} equals the rehearsal's")
    else:
        checked.append("no rehearsal fingerprint to compare (nothing touched)")
    return f"Release {release_id} verified on {environment}: " + "; ".join(checked)


def approved(*, release_id: str, answers: Sequence[Mapping[str, Any]]) -> str:
    who = ", ".join(f"{a['by']} ({a['role']})" for a in answers) or "nobody (no seat required)"
    return f"Release {release_id} approved by {who}"
