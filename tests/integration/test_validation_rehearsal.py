"""Rehearsal on real PostgreSQL: defects planted through the changeset caught before approval; scratch cleanup."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from test_validation_support import demo_catalog, demo_settings, execute, scalar, seeded

from gardien import pg
from gardien.validation import ChangeSummary, Rehearsal, cleanup_stale_scratch, rehearse
from gardien.validation.scratch import create_scratch, list_scratch

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


def sql_apply(statement: str) -> Callable[[str], str]:
    """Stand-in for the engine's apply: plain SQL on the scratch database."""

    def apply_fn(scratch_dsn: str) -> str:
        execute(scratch_dsn, statement)
        return scratch_dsn

    return apply_fn


@pytest.fixture
def target(make_db: Callable[[str], str]) -> str:
    return seeded(make_db("rh"))


def _rehearse(target: str, pg_admin_dsn: str, statement: str, summary: dict, **kwargs: object):
    return rehearse(
        target,
        admin_dsn=pg_admin_dsn,
        catalog=kwargs.pop("catalog", None) or demo_catalog(),
        apply_fn=sql_apply(statement),
        label="test",
        now=NOW,
        settings=kwargs.pop("settings", None) or demo_settings(),
        summary=ChangeSummary.from_dict(summary),
        target_name="prod",
        **kwargs,
    )


CLEAN = (
    "INSERT INTO medicament (code_ucd, libelle, code_atc, forme, unite_id) VALUES"
    " ('3400890000048', 'IBUPROFENE 400 mg cp', 'M01AE01', 'CPR', 1);"
    " INSERT INTO regle_alerte_dose (medicament_id, population, dose_min, dose_max, unite_id)"
    " SELECT id, 'ADULTE', 200, 1200, 1 FROM medicament WHERE code_ucd = '3400890000048';"
    " UPDATE protocole SET libelle = 'Douleur aiguë' WHERE code = 'PROT-DOULEUR'"
)
CLEAN_SUMMARY = {
    "medicament": {"inserts": 1},
    "regle_alerte_dose": {"inserts": 1},
    "protocole": {"updates": 1},
}


@pytest.fixture(scope="module")
def module_db(pg_admin_dsn: str) -> Iterator[Callable[[str], str]]:
    """Module-scoped targets, so each rehearsal (a GX run costs seconds) happens once per module."""
    created: list[str] = []

    def _make(label: str) -> str:
        name = f"gt_{label}_{uuid.uuid4().hex[:10]}"
        created.append(name)
        return seeded(pg.create_database(pg_admin_dsn, name))

    yield _make
    for name in created:
        pg.drop_database(pg_admin_dsn, name)


@pytest.fixture(scope="module")
def clean_run(
    module_db: Callable[[str], str], pg_admin_dsn: str
) -> tuple[Rehearsal, str, dict[str, object], str]:
    """A clean changeset rehearsed once, observing the scratch copy from inside the apply hook."""
    target = module_db("rh_clean")
    stale = create_scratch(
        pg_admin_dsn, name=f"gardien_scratch_test_{uuid.uuid4().hex[:8]}", now=NOW - timedelta(days=2)
    )
    seen: dict[str, object] = {}

    def apply_fn(scratch_dsn: str) -> None:
        seen["rows"] = scalar(
            scratch_dsn, "SELECT string_agg(id || ':' || code_ucd, ',' ORDER BY id) FROM medicament"
        )
        seen["uf_tree"] = scalar(
            scratch_dsn, "SELECT parent_id FROM unite_fonctionnelle WHERE code = 'CARDIO'"
        )
        seen["not_valid_fk"] = scalar(
            scratch_dsn, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated"
        )
        execute(scratch_dsn, CLEAN)
        seen["new_id"] = scalar(scratch_dsn, "SELECT id FROM medicament WHERE code_ucd = '3400890000048'")

    rehearsal = rehearse(
        target,
        admin_dsn=pg_admin_dsn,
        catalog=demo_catalog(),
        apply_fn=apply_fn,
        label="clean",
        now=NOW,
        settings=demo_settings(),
        summary=ChangeSummary.from_dict(CLEAN_SUMMARY),
        target_name="prod",
    )
    return rehearsal, target, seen, stale.name


def test_rehearse_clean_changeset_passes_and_target_untouched(clean_run, pg_admin_dsn: str) -> None:
    rehearsal, target, _, _ = clean_run

    assert rehearsal.report.ok, [r.to_dict() for r in rehearsal.report.expectations if not r.passed]
    assert {r.kind for r in rehearsal.report.expectations} >= {"blast_radius", "foreign_key", "unique"}
    assert scalar(target, "SELECT count(*) FROM medicament") == 3  # applied to the scratch only
    assert rehearsal.scratch_database not in {name for name, _ in list_scratch(pg_admin_dsn)}


def test_rehearse_copy_keeps_rows_ids_and_identity(clean_run) -> None:
    _, target, seen, _ = clean_run

    assert seen["rows"] == scalar(
        target, "SELECT string_agg(id || ':' || code_ucd, ',' ORDER BY id) FROM medicament"
    )
    assert seen["uf_tree"] == 1
    assert seen["new_id"] == 4  # past max(id) = 3
    assert seen["not_valid_fk"] == scalar(target, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'")


def test_rehearse_starts_by_dropping_stale_scratch(clean_run, pg_admin_dsn: str) -> None:
    rehearsal, _, _, stale = clean_run

    assert stale in rehearsal.stale_dropped
    assert stale not in {name for name, _ in list_scratch(pg_admin_dsn)}


# Each defect: the statement the changeset runs (planted in qualif, carried by the release), its summary,
# the expectation that must catch it, and a failing row it must name.
REHEARSED_DEFECTS = [
    (
        # Real dirty data: the target lacks the UNIQUE constraint (dropped in the fixture), so does the scratch.
        "INSERT INTO medicament (code_ucd, libelle, code_atc, forme, unite_id)"
        " VALUES ('3400890000017', 'PARACETAMOL 1 g cp', 'N02BE01', 'CPR', 1)",
        {"medicament": {"inserts": 1}},
        "medicament: natural key (code_ucd) is unique",
        {"code_ucd": "3400890000017"},
    ),
    (
        "UPDATE protocole SET service_code = 'Urg' WHERE code = 'PROT-PNEUMO'",
        {"protocole": {"updates": 1}},
        "protocole.service_code → unite_fonctionnelle.code resolves exactly (logical reference)",
        {"code": "PROT-PNEUMO", "service_code": "Urg", "near_miss": "URG"},
    ),
    (
        "UPDATE profil SET uf_autorisees = 'PNEUMO;REA' WHERE code = 'IDE'",
        {"profil": {"updates": 1}},
        "profil.uf_autorisees → unite_fonctionnelle.code resolves exactly (logical reference)",
        {"code": "IDE", "uf_autorisees": "REA", "near_miss": None},
    ),
    (
        "UPDATE regle_alerte_dose SET dose_max = 400 WHERE population = 'ADULTE'"
        " AND medicament_id IN (SELECT id FROM medicament WHERE code_ucd = '3400890000017')",
        {"regle_alerte_dose": {"updates": 1}},
        "regle_alerte_dose dose_min <= dose_max",
        {"medicament": "3400890000017", "population": "ADULTE", "dose_min": "500.000", "dose_max": "400.000"},
    ),
    (
        # Soft delete of a drug that an active protocol line still prescribes.
        "UPDATE medicament SET actif = false WHERE code_ucd = '3400890000024'",
        {"medicament": {"deletes": 1, "deleted_keys": [{"code_ucd": "3400890000024"}]}},
        "medicament rows deleted by the changeset are not referenced by ligne_protocole.medicament_id",
        {"protocole": "PROT-PNEUMO", "rang": 1, "deleted_medicament_code_ucd": "3400890000024"},
    ),
    (
        # Hard delete of a unit referenced only through a logical reference (no FK to stop it).
        "DELETE FROM unite_mesure WHERE code = 'g/L'",
        {"unite_mesure": {"deletes": 1, "deleted_keys": [{"code": "g/L"}]}},
        "unite_mesure rows deleted by the changeset are not referenced by examen_labo.unite_code",
        {"code": "718-7", "deleted_unite_mesure_code": "g/L"},
    ),
    (
        "DELETE FROM parametre_global WHERE cle LIKE 'P%' AND substr(cle, 2)::int <= 20",
        {"parametre_global": {"deletes": 20}},
        "parametre_global: blast radius (updated + deleted rows) within 25%",
        {"rows_before": 42, "changed": 20, "share": "0.4762", "max_share": "0.25"},
    ),
    (
        "UPDATE droit SET libelle = 'Prescrire (tout)' WHERE code = 'PRESC_MED'",
        {"droit": {"updates": 1}},
        "droit is frozen: the changeset must not change it",
        {"inserts": 0, "updates": 1, "deletes": 0},
    ),
]
REHEARSED_IDS = [
    "duplicate-natural-key",
    "reference-differs-by-case",
    "dangling-list-reference",
    "dose-out-of-range",
    "soft-delete-still-referenced-drug",
    "hard-delete-logically-referenced-unit",
    "over-limit-deletion",
    "frozen-table-changed",
]


@pytest.fixture(scope="module")
def defects_run(module_db: Callable[[str], str], pg_admin_dsn: str) -> Rehearsal:
    """All defects carried by one changeset, rehearsed once on a target with a few dirty habits."""
    target = module_db("rh_defects")
    execute(
        target,
        "ALTER TABLE medicament DROP CONSTRAINT medicament_code_ucd_key;"
        " INSERT INTO parametre_global (cle, valeur) SELECT 'P' || i, i::text FROM generate_series(1, 40) i",
    )
    summary: dict[str, dict] = {}
    for _, part, _, _ in REHEARSED_DEFECTS:
        for table, changes in part.items():
            merged = summary.setdefault(table, {})
            for key, value in changes.items():
                merged[key] = merged.get(key, [] if key == "deleted_keys" else 0) + value
    return rehearse(
        target,
        admin_dsn=pg_admin_dsn,
        catalog=demo_catalog(frozen=("droit", "formulaire")),
        apply_fn=sql_apply("; ".join(statement for statement, _, _, _ in REHEARSED_DEFECTS)),
        label="defects",
        now=NOW,
        settings=demo_settings(),
        summary=ChangeSummary.from_dict(summary),
        target_name="prod",
    )


@pytest.mark.parametrize(
    ("statement", "summary", "expectation", "example"), REHEARSED_DEFECTS, ids=REHEARSED_IDS
)
def test_rehearse_planted_defect_caught_before_approval(
    defects_run: Rehearsal, statement: str, summary: dict, expectation: str, example: dict
) -> None:
    result = defects_run.report.result(expectation)

    assert result.status == "failed"
    assert result.unexpected_count >= 1
    assert any(example.items() <= e.items() for e in result.examples), result.examples


def test_rehearse_only_planted_defects_fail(defects_run: Rehearsal) -> None:
    failed = {r.name for r in defects_run.report.failed}

    assert not defects_run.report.ok
    # the hard-deleted unit also dangles from examen_labo (the generated logical-reference check)
    assert failed == {e for _, _, e, _ in REHEARSED_DEFECTS} | {
        "examen_labo.unite_code → unite_mesure.code resolves exactly (logical reference)",
        "medicament rows deleted by the changeset are not referenced by regle_alerte_dose.medicament_id",
    }


def test_rehearse_unchanged_frozen_table_passes(defects_run: Rehearsal) -> None:
    assert (
        defects_run.report.result("formulaire is frozen: the changeset must not change it").status == "passed"
    )


def test_rehearse_dangling_fk_refused_by_scratch_reported_as_apply_failure(
    target: str, pg_admin_dsn: str
) -> None:
    statement = (
        "INSERT INTO ligne_protocole (protocole_id, rang, medicament_id, dose, unite_id, frequence)"
        " VALUES (1, 2, 404, 1, 1, '1/j')"
    )

    report = _rehearse(target, pg_admin_dsn, statement, {"ligne_protocole": {"inserts": 1}}).report

    assert not report.ok
    result = report.result("the changeset applies to the target's current state")
    assert result.status == "failed"
    assert "ligne_protocole_medicament_id_fkey" in result.message


def test_rehearse_empty_changeset_validates_trivially(target: str, pg_admin_dsn: str) -> None:
    def never(_: str) -> None:
        raise AssertionError("an empty changeset must not be applied")

    rehearsal = rehearse(
        target,
        admin_dsn=pg_admin_dsn,
        catalog=demo_catalog(),
        apply_fn=never,
        label="empty",
        now=NOW,
        settings=demo_settings(),
        summary=ChangeSummary.from_dict({"medicament": {}}),
    )

    assert rehearsal.report.ok and rehearsal.report.trivial
    assert rehearsal.scratch_database is None
    assert "empty changeset" in rehearsal.report.notes[0]


@pytest.mark.parametrize(
    "error", [RuntimeError("engine crashed"), KeyboardInterrupt()], ids=["error", "interrupt"]
)
def test_rehearse_failure_drops_scratch(target: str, pg_admin_dsn: str, error: BaseException) -> None:
    created: list[str] = []

    def apply_fn(scratch_dsn: str) -> None:
        created.append(scratch_dsn)
        raise error

    with pytest.raises(type(error)):
        rehearse(
            target,
            admin_dsn=pg_admin_dsn,
            catalog=demo_catalog(),
            apply_fn=apply_fn,
            label="boom",
            now=NOW,
            settings=demo_settings(),
            suffix="failing1",
        )

    assert created
    assert "gardien_scratch_boom_failing1" not in {name for name, _ in list_scratch(pg_admin_dsn)}


def test_cleanup_stale_scratch_drops_only_old_marked(pg_admin_dsn: str) -> None:
    old = create_scratch(pg_admin_dsn, name="gardien_scratch_test_old0001", now=NOW - timedelta(hours=7))
    young = create_scratch(pg_admin_dsn, name="gardien_scratch_test_young001", now=NOW - timedelta(minutes=5))
    unmarked = pg.create_database(pg_admin_dsn, "gardien_scratch_test_unmarked1")
    try:
        dropped = cleanup_stale_scratch(pg_admin_dsn, older_than=timedelta(hours=6), now=NOW)

        remaining = {name for name, _ in list_scratch(pg_admin_dsn)}
        assert old.name in dropped and old.name not in remaining
        assert young.name in remaining and young.name not in dropped
        assert "gardien_scratch_test_unmarked1" in remaining
    finally:
        for name in (young.name, "gardien_scratch_test_unmarked1"):
            pg.drop_database(pg_admin_dsn, name)
        del unmarked
