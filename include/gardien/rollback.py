"""Roll back one deployment from its before-images, then prove it with the pre-deployment fingerprint."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gardien import faults, journal, restore
from gardien.apply import Phases, Timeouts, prepare, read_touched, without_gc
from gardien.catalog import bind_catalog
from gardien.config import CatalogConfig
from gardien.errors import RollbackError
from gardien.fingerprint import LOCAL_SCHEMES, ScopeFingerprint, local_scope_fingerprint, scope_fingerprint
from gardien.keys import KeyMap
from gardien.portable import key_text
from gardien.rowhash import SCHEME as ROWHASH_SCHEME
from gardien.touched import Whole
from gardien.writes import TableWrites, execute


@dataclass(frozen=True, slots=True)
class RollbackResult:
    """``status``: rolled_back or already_rolled_back. ``proven``: the scope equals its pre-deployment state."""

    status: str
    deployment_id: str
    changeset_id: str
    target: str
    proven: bool
    fingerprint_expected: str
    fingerprint_restored: str
    restored: dict[str, int]
    forced_over: tuple[str, ...] = ()
    kept_later_edits: tuple[dict[str, Any], ...] = ()
    note: str | None = None  # e.g. a COMMIT whose outcome had to be checked (gardien.faults.commit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "deployment_id": self.deployment_id,
            "changeset_id": self.changeset_id,
            "target": self.target,
            "proven": self.proven,
            "fingerprint_expected": self.fingerprint_expected,
            "fingerprint_restored": self.fingerprint_restored,
            "restored": self.restored,
            "forced_over": list(self.forced_over),
            "kept_later_edits": list(self.kept_later_edits),
            "note": self.note,
        }


@without_gc
def _local_scheme(fingerprint: dict[str, Any]) -> str | None:
    """The scheme of a journaled local fingerprint (local/1 when unmarked: the build that introduced it)."""
    local = fingerprint.get("local")
    return str(local.get("scheme", "local/1")) if isinstance(local, dict) else None


def proof_method(
    dep: journal.Deployment, later_active: list[journal.Deployment], overlapping: list[journal.Deployment]
) -> str:
    """How the rollback of ``dep`` will be proven: a local scheme (gardien.fingerprint.LOCAL_SCHEMES) when
    ``dep`` and every later deployment still in effect journaled local fingerprints of one scheme this
    version computes, else "portable" when their portable fingerprints are of the current row-hash scheme.

    Raises RollbackError, before anything is written, when neither can be recomputed: journals written by
    a Gardien whose fingerprints this one cannot reproduce.
    """
    later = [d for d in later_active if d not in overlapping]
    fingerprints = [dep.fingerprint_before]
    fingerprints += [fp for d in later for fp in (d.fingerprint_before, d.fingerprint_after)]
    schemes = {_local_scheme(fp) for fp in fingerprints}
    if len(schemes) == 1 and (scheme := schemes.pop()) in LOCAL_SCHEMES:
        return scheme
    if all(fp.get("scheme") == ROWHASH_SCHEME for fp in fingerprints):
        return "portable"
    names = ", ".join(d.name for d in [dep, *later])
    raise RollbackError(
        f"deployment {dep.name} cannot be rolled back with a proof by this Gardien version: it (or a later "
        f"deployment still in effect: {names}) was journaled by a version whose fingerprints this one cannot "
        "recompute. Nothing was changed. Roll it back with the version that deployed it, or capture and apply "
        "a changeset that restores the previous configuration.",
        changed=False,
    )


def rollback_deployment(
    conn: Any,
    deployment_id: str,
    *,
    catalog_config: CatalogConfig,
    target: str,
    rolled_back_at: datetime,
    force: bool = False,
    keep_later_edits: bool = False,
    timeouts: Timeouts = Timeouts(),  # noqa: B008 - frozen value
) -> RollbackResult:
    """Restore the before-images of ``deployment_id`` in the caller's transaction, then prove it.

    Order: re-insert deleted rows (with their former ids) and restore updated rows parents first, then
    delete inserted rows children first. Proof: the LOCAL fingerprint of the touched tables (stored rows,
    ids included) equals the one the journal recorded just before the deployment, plus the recorded effect
    of later deployments still in effect on other rows (fingerprints are sums; see
    docs/adr/0001-changeset-engine.md), in the scheme they were journaled with (``proof_method``).

    Deployments journaled with whole rows (``Deployment.whole``) are first checked for later edits: each
    touched row is locked and compared with the row the deployment left (gardien.restore.check); an edit
    made since is named and nothing is written, unless ``keep_later_edits``, which keeps the edits that do
    not overlap the deployment's own changes: the restoration is proven first, then those edits are set
    back and recorded in the proof (``kept_later_edits``).

    Raises RollbackError when the deployment is unknown, when a later deployment still in effect touched
    the same rows (unless ``force``), when rows it touched were edited since (above), or when the proof
    fails ("manual repair needed"). On an error the caller must roll the transaction back: the target then
    stays exactly as deployed.
    """
    with conn.cursor() as cur:
        phase = Phases(f"rollback {deployment_id} on {target}")
        prepare(cur, schema=catalog_config.schema_, target=target, timeouts=timeouts)
        dep = journal.find(cur, deployment_id)
        phase("journal")
        if dep is None:
            known = ", ".join(d.deployment_id for d in journal.history(cur)[-5:]) or "none"
            raise RollbackError(
                f"target {target} has no deployment {deployment_id!r} (latest: {known}). "
                "Check the id with `gardien apply --json` output or the release report.",
                changed=False,
            )
        expected = ScopeFingerprint.from_dict(dep.fingerprint_before)
        if dep.rolled_back_at is not None:
            proof = dep.rollback_proof or {}
            return RollbackResult(
                status="already_rolled_back",
                deployment_id=dep.deployment_id,
                changeset_id=dep.changeset_id,
                target=target,
                proven=bool(proof.get("proven")),
                fingerprint_expected=str(proof.get("expected") or expected.digest),
                fingerprint_restored=str(proof.get("restored", "")),
                restored={},
            )
        touched = dep.touched()
        later_active = journal.later_active(cur, dep)
        overlapping = [
            d for d in later_active if any(touched.get(t, set()) & keys for t, keys in d.touched().items())
        ]
        if overlapping and not force:
            names = ", ".join(d.name for d in overlapping)
            raise RollbackError(
                f"deployment {dep.name} cannot be rolled back: later deployment(s) {names} changed the same rows "
                "and are still in effect. Roll those back first, or pass --force to restore these rows anyway.",
                changed=False,
            )
        method = proof_method(dep, later_active, overlapping)
        phase("later deployments")
        catalog = bind_catalog(conn, catalog_config, label=target)
        kept: list[restore.LaterEdit] = []
        if dep.whole:
            plans, kept = restore.check(
                cur,
                catalog=catalog,
                dep=dep,
                overlapping=overlapping,
                keep_later_edits=keep_later_edits,
                target=target,
            )
            phase("lock and compare touched rows")
            restore.restore(cur, catalog=catalog, plans=plans)
        else:
            _restore_portable(cur, catalog=catalog, dep=dep, target=target)
        phase("writes")
        # Later deployments still in effect legitimately changed other rows: their recorded effect is
        # added to the expectation (fingerprints are sums). Anything else that changed is unexplained.
        later = [d for d in later_active if d not in overlapping]
        portable_before = expected.digest
        local = method != "portable"
        if local:
            # The local proof (raw stored rows, ids included, no join): what an exact restoration must give.
            expected_local = ScopeFingerprint.from_dict(dep.fingerprint_before["local"])
            for d in later:
                expected_local = expected_local.shifted(
                    ScopeFingerprint.from_dict(d.fingerprint_after["local"]),
                    ScopeFingerprint.from_dict(d.fingerprint_before["local"]),
                )
            restored = local_scope_fingerprint(
                cur, catalog, [t.table for t in expected_local.tables], scheme=method
            )
            compared = expected_local
        else:
            # Journaled by a build without local fingerprints: the portable proof, over the full scope.
            for d in later:
                expected = expected.shifted(
                    ScopeFingerprint.from_dict(d.fingerprint_after),
                    ScopeFingerprint.from_dict(d.fingerprint_before),
                )
            restored = scope_fingerprint(cur, catalog, [t.table for t in expected.tables])
            compared = expected
        phase(f"proof ({method})")
        if restored != compared:
            # The caller undoes the transaction: nothing stays changed, but the scope differs unexplained.
            raise RollbackError(
                _unproven(cur, catalog=catalog, dep=dep, restored=restored, expected=compared, target=target),
                changed=False,
                proof_failed=True,
            )
        if kept:
            restore.reapply_kept(cur, plans=plans)
        proof = {
            "kept_later_edits": [e.kept() for e in kept],
            "proven": True,
            "method": "local" if local else "portable",
            "scheme": method if local else ROWHASH_SCHEME,
            "expected": compared.digest,
            "restored": restored.digest,
            "portable_before": portable_before,
        }
        journal.mark_rolled_back(cur, deployment_id=dep.deployment_id, at=rolled_back_at, proof=proof)
        return RollbackResult(
            status="rolled_back",
            deployment_id=dep.deployment_id,
            changeset_id=dep.changeset_id,
            target=target,
            proven=True,
            fingerprint_expected=compared.digest,
            fingerprint_restored=restored.digest,
            restored={t: len(imgs) for t, imgs in dep.before_images.items()},
            forced_over=tuple(d.deployment_id for d in overlapping),
            kept_later_edits=tuple(e.kept() for e in kept),
        )


def _restore_portable(cur: Any, *, catalog: Any, dep: journal.Deployment, target: str) -> None:
    """Restore a deployment journaled without whole rows from its portable before-images (no later-edit
    check is possible: the journal does not say what the deployment left)."""
    keymap = KeyMap(cur, catalog)
    # Which touched keys physically exist now (restoring needs nothing more: an update restores the
    # whole before-image, soft-delete flag included).
    touched = dep.touched()
    for name, keys in touched.items():
        keymap.add(catalog.table(name), keys)  # resolved as they are added
    current = {name: keymap.ids(catalog.table(name)) for name in touched}
    writes: dict[str, TableWrites] = {}
    for name, images in dep.before_images.items():
        now = current.get(name, {})
        tw = TableWrites(table=name, hard=True)
        for img in images:
            if img.values is None:
                if img.key in now:
                    tw.deletes.append(img.key)
            elif img.key in now:
                tw.updates.append((img.key, img.values))
            else:
                tw.inserts.append((img.key, img.values))
                if img.id is not None:
                    tw.restore_ids[img.key] = img.id
        writes[name] = tw
    execute(cur, catalog=catalog, writes=writes, keymap=keymap)


def _unproven(
    cur: Any,
    *,
    catalog: Any,
    dep: journal.Deployment,
    restored: ScopeFingerprint,
    expected: ScopeFingerprint,
    target: str,
) -> str:
    rows = (
        _whole_differences(cur, catalog=catalog, dep=dep)
        if dep.whole
        else _portable_differences(cur, catalog=catalog, dep=dep)
    )
    tables = restored.differing(expected)
    detail = (
        "\n  ".join(rows[:50])
        if rows
        else (
            "every restored row equals its before-image, so rows the deployment did not touch changed since "
            f"(in {', '.join(tables)})"
        )
    )
    return (
        f"manual repair needed: rollback of deployment {dep.name} on {target} could not be proven; the "
        f"restored scope differs from its pre-deployment fingerprint in table(s) {', '.join(tables)}:\n  {detail}\n"
        "The rollback transaction was undone: the target is still exactly as it was before this rollback "
        "(deployed). Compare with the release report, repair by hand or capture a corrective changeset."
    )


def _whole_differences(cur: Any, *, catalog: Any, dep: journal.Deployment) -> list[str]:
    """The touched rows that differ from their whole before-image after the restoration: a row expected
    and missing (or present under another id), a row expected absent and present, a column that differs."""
    keymap = KeyMap(cur, catalog)
    out = []
    for name, images in dep.before_images.items():
        table = catalog.table(name)
        whole = Whole(cur, table)
        pk = table.pk
        keymap.add(table, [img.key for img in images])
        ids = keymap.ids(table)
        now = whole.read(cur, [ids[img.key] for img in images if img.key in ids], lock=False)
        for img in images:
            found = str(ids[img.key]) if img.key in ids else None
            if img.row is None:
                if found is not None:
                    out.append(f"{name} {key_text(img.key)}: expected absent, found id {found}")
                continue
            if found != str(img.row[pk]):
                out.append(
                    f"{name} {key_text(img.key)}: expected id {img.row[pk]}, found {found and 'id ' + found}"
                )
                continue
            row = now[found]
            out += [
                f"{name} {key_text(img.key)} {c}: expected {v!r}, found {row.get(c)!r}"
                for c, v in img.row.items()
                if row.get(c) != v
            ]
    return out


def _portable_differences(cur: Any, *, catalog: Any, dep: journal.Deployment) -> list[str]:
    """As ``_whole_differences``, from the portable before-images (deployments journaled without whole rows)."""
    keymap = KeyMap(cur, catalog)
    now = read_touched(
        cur, catalog=catalog, keymap=keymap, keys={t: list(k) for t, k in dep.touched().items()}
    )
    rows = []
    for name, images in dep.before_images.items():
        for img in images:
            actual = now.get(name, {}).get(img.key)
            if (actual[1] if actual else None) != img.values:
                rows.append(
                    f"{name} {key_text(img.key)}: expected {img.values}, found {actual[1] if actual else None}"
                )
            elif actual is not None and img.id is not None and actual[0] != img.id:
                rows.append(f"{name} {key_text(img.key)}: expected id {img.id}, found id {actual[0]}")
    return rows


def rollback(dsn: str, deployment_id: str, **kwargs: Any) -> RollbackResult:
    """Connect to ``dsn``, roll back and commit when proven; on any error the transaction is undone.

    Every database failure becomes a RollbackError naming its cause and saying whether anything changed
    (gardien.faults); a connection lost during COMMIT is settled by reading the target's journal.
    """

    def committed(cur: Any, _result: RollbackResult) -> bool:
        dep = journal.find(cur, deployment_id)
        return dep is not None and dep.rolled_back_at is not None

    return faults.run(
        dsn,
        application="gardien rollback",
        target=kwargs.get("target", "target"),
        what="rollback",
        error=RollbackError,
        unchanged="nothing was rolled back: the target is still as deployed",
        work=lambda conn: rollback_deployment(conn, deployment_id, **kwargs),
        changed=lambda result: result.status == "rolled_back",
        committed=committed,
    )
