"""The OpenMRS-shaped example end to end on real PostgreSQL: promotions converge, existing ids are kept,
rollback restores content and ids exactly (also of only the second of two promotions), and validation
flags bad references before anyone is asked to approve."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from test_engine_support import execute, query

from gardien.apply import deploy
from gardien.config import load_config
from gardien.demo.openmrs.generator import CONFIG, SECOND, Built, fill
from gardien.diff import diff
from gardien.errors import SourceDataError
from gardien.rollback import rollback
from gardien.validation.bridge import engine_apply, summary_from_changeset
from gardien.validation.gate import validate_state
from gardien.validation.rehearsal import rehearse
from gardien.validation.settings import parse_validation_settings

pytestmark = pytest.mark.integration
CATALOG = load_config(CONFIG, environ={"GARDIEN_PG_DSN": "postgresql://unused@127.0.0.1/postgres"}).catalog
SETTINGS = parse_validation_settings({"examples": 10})


def _pk(dsn: str, table: str) -> str:
    [(pk,)] = query(
        dsn,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (table,),
    )
    return pk


def snapshot(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every managed table, whole rows (ids and audit columns included), by primary key."""
    return {t.name: query(dsn, f"SELECT * FROM {t.name} ORDER BY {_pk(dsn, t.name)}") for t in CATALOG.tables}


def ids(dsn: str) -> dict[tuple[str, Any], int]:
    """(table, natural key) -> surrogate id, for every row of every managed table."""
    out: dict[tuple[str, Any], int] = {}
    for t in CATALOG.tables:
        key = ", ".join(t.natural_key)
        for row in query(dsn, f"SELECT {_pk(dsn, t.name)}, {key} FROM {t.name}"):
            out[(t.name, row[1:])] = row[0]
    return out


@pytest.fixture
def built(make_db: Callable[[str], str]) -> Built:
    qualif, prod = make_db("omrs_q"), make_db("omrs_p")
    fill(qualif, env="qualif")
    fill(prod, env="prod")
    return Built(qualif=qualif, prod=prod)


def _promote(built: Built) -> Any:
    changeset = diff(
        built.qualif, built.prod, catalog_config=CATALOG, source_label="qualif", target_label="prod"
    )
    assert not changeset.is_empty
    return deploy(
        built.prod,
        changeset,
        catalog_config=CATALOG,
        target="prod",
        applied_at=dt.datetime.now(dt.UTC),
        requested_by="builder",
    )


def test_openmrs_scale_and_different_ids(built: Built) -> None:
    counts = {
        t: query(built.prod, f"SELECT count(*) FROM {t}")[0][0]
        for t in ("concept", "concept_name", "location", "role", "role_privilege")
    }
    assert counts == {
        "concept": 3000,
        "concept_name": 6000,
        "location": 300,
        "role": 100,
        "role_privilege": 3102,
    }
    q, p = ids(built.qualif), ids(built.prod)
    shared = set(q) & set(p)
    assert len(shared) > 20_000 and all(q[k] != p[k] for k in shared)


def test_openmrs_promotion_converges_keeps_ids_and_rolls_back_exactly(built: Built) -> None:
    before, ids_before = snapshot(built.prod), ids(built.prod)

    applied = _promote(built)

    assert diff(built.qualif, built.prod, catalog_config=CATALOG).is_empty
    ids_after = ids(built.prod)
    assert all(
        ids_after[k] == v for k, v in ids_before.items() if k in ids_after
    )  # patient data points at them
    assert len(ids_after) == len(ids_before) + 20 - 1  # 20 rows inserted, one order set member deleted
    [(creator, retired, reason)] = query(
        built.prod,
        "SELECT l.creator, e.retired, e.retire_reason FROM location l, encounter_type e"
        " WHERE l.name = 'Location Triage' AND e.name = 'Encounter Type 7'",
    )
    assert (creator, retired, reason) == (1, True, "merged into Encounter Type 1")  # on_insert, retire
    restored = rollback(
        built.prod,
        applied.deployment_id,
        catalog_config=CATALOG,
        target="prod",
        rolled_back_at=dt.datetime.now(dt.UTC),
    )
    assert restored.proven
    assert snapshot(built.prod) == before


def test_openmrs_two_promotions_then_rollback_of_only_the_second(built: Built) -> None:
    _promote(built)
    between = snapshot(built.prod)
    execute(built.qualif, SECOND)

    second = _promote(built)
    assert query(built.prod, "SELECT retired FROM drug WHERE name = 'Drug 3'") == [(True,)]
    assert rollback(
        built.prod,
        second.deployment_id,
        catalog_config=CATALOG,
        target="prod",
        rolled_back_at=dt.datetime.now(dt.UTC),
    ).proven

    assert snapshot(built.prod) == between


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (
            "INSERT INTO role_privilege (role, privilege) VALUES ('Role 1', 'Launch Rockets')",
            'role_privilege ["Role 1","Launch Rockets"]: privilege refers to privilege.privilege \'Launch Rockets\'',
        ),
        (
            "INSERT INTO program_workflow_state (uuid, workflow_uuid, concept_id, initial, terminal)"
            " SELECT 'b0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-00000000dead', concept_id,"
            " true, false FROM concept LIMIT 1",
            "workflow_uuid refers to program_workflow",
        ),
    ],
    ids=["grant-to-a-privilege-nowhere", "state-of-an-unresolved-workflow"],
)
def test_openmrs_dangling_reference_refused_at_extraction_by_name(
    built: Built, edit: str, named: str
) -> None:
    execute(built.qualif, edit)

    with pytest.raises(SourceDataError) as err:
        diff(built.qualif, built.prod, catalog_config=CATALOG)

    assert named in str(err.value)


def test_openmrs_rehearsal_names_references_allowed_only_by_the_allow_list(
    built: Built, pg_admin_dsn: str
) -> None:
    changeset = diff(built.qualif, built.prod, catalog_config=CATALOG)
    now = dt.datetime.now(dt.UTC)

    report = rehearse(
        built.prod,
        admin_dsn=pg_admin_dsn,
        catalog=CATALOG,
        apply_fn=engine_apply(changeset, catalog=CATALOG, applied_at=now, requested_by="builder"),
        label="openmrs",
        now=now,
        settings=SETTINGS,
        summary=summary_from_changeset(changeset, catalog=CATALOG),
        target_name="prod",
    ).report

    assert report.ok, [e.message for e in report.expectations if not e.passed]
    [note] = [n for n in report.notes if "allowed only by" in n]
    assert note.startswith(
        "role_privilege.privilege: 4 value(s) found in no table, allowed only by the allow-list and pattern"
    )
    assert note.endswith(
        "'App: registration', 'App: triage', 'Provider', 'System Developer'. Check that the application defines them."
    )
    assert "Core Privilege 3" not in note  # found in the unmanaged core_privilege table


def test_openmrs_validation_of_a_dirty_target_flags_each_unresolved_reference(built: Built) -> None:
    execute(
        built.prod,
        "INSERT INTO role_privilege (role, privilege) VALUES ('Role 1', 'Launch Rockets');"
        " UPDATE program_workflow_state SET workflow_uuid = 'c0000000-0000-4000-8000-000000000000'"
        " WHERE uuid = (SELECT min(uuid) FROM program_workflow_state)",
    )

    report = validate_state(built.prod, catalog=CATALOG, settings=SETTINGS, target="prod")

    failed = {e.name: e.examples for e in report.expectations if not e.passed}
    assert sorted(failed) == [
        "program_workflow_state.workflow_uuid → program_workflow.uuid resolves exactly (logical reference)",
        "role_privilege.privilege → privilege.privilege resolves exactly (logical reference)",
    ]
    grant = failed["role_privilege.privilege → privilege.privilege resolves exactly (logical reference)"]
    assert [e["privilege"] for e in grant] == ["Launch Rockets"]
