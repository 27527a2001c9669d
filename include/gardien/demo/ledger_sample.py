"""A sample release history written through the ledger API, for the board's tests, benchmark and screenshots.

One call records one released change the way the release DAG records it: changeset (a new drug with a
hostile-looking label when asked, a dose-limit change, a profile's unit list, a retired unit), rehearsal,
approvals, deployments to preprod and prod, verification, close. Nothing here is used by a real release.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import psycopg2.extensions

from gardien import ledger
from gardien.changeset import Changeset, Delete, FieldChange, Insert, TableChanges, Update
from gardien.fingerprint import ScopeFingerprint, TableFingerprint
from gardien.validation.report import ExpectationResult, ValidationReport

_FP = ScopeFingerprint(tables=(TableFingerprint("medicament", 2, 5, 6),))


def sample_changeset(*, drug_label: str, n: int = 0) -> Changeset:
    """Changes a pharmacist, the security officer and the CAB each have to see (``n`` varies the content)."""
    return Changeset(
        catalog_fingerprint="cf" * 32,
        source_fingerprint=_FP,
        target_fingerprint=_FP,
        tables=(
            TableChanges(
                table="medicament",
                inserts=(
                    Insert(key=(f"UCD-{9400000 + n}",), values={"libelle": drug_label, "actif": "true"}),
                ),
            ),
            TableChanges(
                table="profil",
                updates=(
                    Update(
                        key=("IDE-PNEUMO",),
                        baseline={"uf_autorisees": "UF1001;UF2005;UF2010"},
                        changes={
                            "uf_autorisees": FieldChange(
                                before="UF1001;UF2005;UF2010", after="UF1001;UF2010;UF1035"
                            )
                        },
                    ),
                ),
            ),
            TableChanges(
                table="regle_alerte_dose",
                updates=(
                    Update(
                        key=(("UCD-3400893",), "adulte"),
                        baseline={"dose_max_jour": "4000", "unite": "mg"},
                        changes={"dose_max_jour": FieldChange(before="4000", after="3000")},
                    ),
                ),
            ),
            TableChanges(
                table="unite_fonctionnelle",
                deletes=(Delete(key=("UF2005",), baseline={"libelle": "HDJ pneumologie", "actif": "true"}),),
            ),
        ),
    )


def _validation(target: str, *, failed_probe: bool) -> dict:
    probe = ExpectationResult(
        name="active_protocol_lines_have_active_dosed_drugs",
        table=None,
        kind="smoke_probe",
        passed=not failed_probe,
        unexpected_count=1 if failed_probe else 0,
        examples=({"protocole": "PROTO-CARDIO", "rang": "1", "code_ucd": "UCD-3400890"},)
        if failed_probe
        else (),
        message="every line of an active protocol names an active drug that has a dose-alert rule",
    )
    unique = ExpectationResult("medicament_code_ucd_unique", "medicament", "unique", True, 0, (), "unique")
    return ValidationReport.from_results(target=target, results=[unique, probe]).to_dict()


def record_sample_release(
    conn: psycopg2.extensions.connection,
    *,
    release_id: str,
    at: datetime,
    drug_label: str = "AMIODARONE 200 mg cp",
    comment: str = "relu, dose conforme",
    n: int = 0,
    deploy: bool = True,
    run_id: str | None = None,
) -> Changeset:
    """Record one release in the caller's transaction (never commits); ``deploy=False`` stops at validation."""
    clock: Iterator[datetime] = iter(at + timedelta(seconds=10 * i) for i in range(100))
    airflow = ledger.AirflowIds(
        dag_id="gardien_release_standard", run_id=run_id or release_id, task_id="open_release"
    )
    ledger.create_release(
        conn,
        release_id=release_id,
        path=["preprod", "prod"],
        requested_by="parametreur",
        reason="Nouveau médicament et seuil de dose revu",
        at=next(clock),
        window_start=at,
        window_end=at + timedelta(hours=3),
        airflow=airflow,
    )
    cs = sample_changeset(drug_label=drug_label, n=n)
    ledger.put_changeset(conn, changeset_id=cs.id, body=cs.body_json())
    ledger.attach_changeset(conn, release_id=release_id, changeset_id=cs.id, actor="airflow", at=next(clock))
    ledger.record_validation(
        conn,
        release_id=release_id,
        changeset_id=cs.id,
        environment="rehearsal:prod",
        passed=True,
        report=_validation("prod", failed_probe=False),
        actor="airflow",
        at=next(clock),
    )
    ledger.set_release_status(
        conn, release_id=release_id, status="validated", actor="airflow", at=next(clock)
    )
    if not deploy:
        return cs
    for approver, note in (("pharma.chef", comment), ("chef.projet", None), ("dsi.adjoint", None)):
        ledger.record_approval(
            conn,
            release_id=release_id,
            changeset_id=cs.id,
            approver=approver,
            decision="approved",
            at=next(clock),
            comment=note,
        )
    for env in ("preprod", "prod"):
        dep = ledger.record_deployment(
            conn,
            release_id=release_id,
            environment=env,
            changeset_id=cs.id,
            status="applied",
            actor="airflow",
            at=next(clock),
            target_deployment_id=f"dep-{env}-{n}",
            fingerprints={"before": "b" * 64, "after": "a" * 64, "matches_source": True},
        )
        ledger.record_validation(
            conn,
            release_id=release_id,
            changeset_id=cs.id,
            environment=env,
            passed=True,
            report=_validation(env, failed_probe=False),
            actor="airflow",
            at=next(clock),
        )
        ledger.set_deployment_status(
            conn, deployment_id=dep.id, status="verified", actor="airflow", at=next(clock)
        )
    ledger.set_release_status(conn, release_id=release_id, status="closed", actor="airflow", at=next(clock))
    ledger.append_event(
        conn,
        kind="release.closed",
        actor="airflow",
        at=next(clock),
        release_id=release_id,
        subject=cs.id,
        payload={"outcome": "RELEASED", "ok": True, "detail": "deployed and verified on preprod, prod"},
    )
    return cs
