"""Validation of a database state on real PostgreSQL: each planted defect caught, failing rows named."""

from __future__ import annotations

import html
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_validation_support import CONFIG, demo_catalog, demo_settings, execute, scalar, seeded

from gardien import pg
from gardien.errors import ConfigurationError
from gardien.validation import ValidationReport, parse_probes, validate_state, verify_target

pytestmark = pytest.mark.integration

DEFECTS = [
    (
        "ALTER TABLE protocole DROP CONSTRAINT protocole_code_key;"
        " INSERT INTO protocole (code, libelle) VALUES ('PROT-DOULEUR', 'Douleur bis')",
        "protocole: natural key (code) is unique",
        {"code": "PROT-DOULEUR"},
    ),
    (
        "ALTER TABLE regle_alerte_dose DROP CONSTRAINT regle_alerte_dose_medicament_id_population_key;"
        " INSERT INTO regle_alerte_dose (medicament_id, population, dose_min, dose_max, unite_id)"
        " VALUES (1, 'ADULTE', 1, 2, 1)",
        "regle_alerte_dose: natural key (medicament_id, population) is unique",
        {"medicament": "3400890000017", "population": "ADULTE"},
    ),
    (
        # Dirty data behind a NOT VALID constraint: the FK is declared, existing rows were never checked.
        "ALTER TABLE ligne_protocole DROP CONSTRAINT ligne_protocole_medicament_id_fkey;"
        " INSERT INTO ligne_protocole (protocole_id, rang, medicament_id, dose, unite_id, frequence)"
        " VALUES (1, 2, 999, 1, 1, '1/j');"
        " ALTER TABLE ligne_protocole ADD CONSTRAINT ligne_protocole_medicament_id_fkey"
        " FOREIGN KEY (medicament_id) REFERENCES medicament (id) NOT VALID",
        "ligne_protocole.medicament_id → medicament resolves (foreign key ligne_protocole_medicament_id_fkey)",
        {"protocole": "PROT-DOULEUR", "rang": 2, "medicament_id": 999},
    ),
    (
        # Enforcement switched off (a bulk load with triggers disabled): the constraint is still declared.
        "ALTER TABLE unite_fonctionnelle DISABLE TRIGGER ALL;"
        " UPDATE unite_fonctionnelle SET parent_id = 42 WHERE code = 'PNEUMO';"
        " ALTER TABLE unite_fonctionnelle ENABLE TRIGGER ALL",
        "unite_fonctionnelle.parent_id → unite_fonctionnelle resolves (foreign key unite_fonctionnelle_parent_id_fkey)",
        {"code": "PNEUMO", "parent_id": 42},
    ),
    (
        "UPDATE protocole SET service_code = 'NEURO' WHERE code = 'PROT-PNEUMO'",
        "protocole.service_code → unite_fonctionnelle.code resolves exactly (logical reference)",
        {"code": "PROT-PNEUMO", "service_code": "NEURO", "near_miss": None},
    ),
    (
        "UPDATE protocole SET service_code = 'urg' WHERE code = 'PROT-DOULEUR'",
        "protocole.service_code → unite_fonctionnelle.code resolves exactly (logical reference)",
        {"code": "PROT-DOULEUR", "service_code": "urg", "near_miss": "URG"},
    ),
    (
        "UPDATE profil SET uf_autorisees = 'URG;CARDIO ' WHERE code = 'MED'",
        "profil.uf_autorisees → unite_fonctionnelle.code resolves exactly (logical reference)",
        {"code": "MED", "uf_autorisees": "CARDIO ", "near_miss": "CARDIO"},
    ),
    (
        "UPDATE examen_labo SET unite_code = 'G/l' WHERE code = '718-7'",
        "examen_labo.unite_code → unite_mesure.code resolves exactly (logical reference)",
        {"code": "718-7", "unite_code": "G/l", "near_miss": "g/L"},
    ),
    (
        "UPDATE regle_alerte_dose SET dose_min = 9000 WHERE population = 'PEDIATRIE'",
        "regle_alerte_dose dose_min <= dose_max",
        {
            "medicament": "3400890000017",
            "population": "PEDIATRIE",
            "dose_min": "9000.000",
            "dose_max": "60.000",
        },
    ),
    (
        "UPDATE regle_alerte_dose SET dose_min = 0, dose_max = 0 WHERE medicament_id = 2",
        "regle_alerte_dose.dose_max is positive",
        {"medicament": "3400890000024", "population": "ADULTE", "dose_max": "0.000"},
    ),
    (
        "UPDATE champ_formulaire SET type_champ = 'Nombre' WHERE code = 'POIDS'",
        "champ_formulaire.type_champ in domain",
        {"formulaire": "ENTREE", "code": "POIDS", "type_champ": "Nombre"},
    ),
    (
        "UPDATE etablissement SET finess = '37000018X'",
        "etablissement.finess is 9 characters (FINESS)",
        {"finess": "37000018X"},
    ),
]
DEFECT_IDS = [
    "duplicate-natural-key",
    "duplicate-composite-key",
    "dangling-fk-not-valid",
    "dangling-fk-triggers-disabled",
    "dangling-logical-reference",
    "reference-differs-by-case",
    "list-reference-trailing-space",
    "unit-code-differs-by-case",
    "dose-min-above-max",
    "dose-max-not-positive",
    "type-champ-out-of-domain",
    "finess-malformed",
]


PROBES = parse_probes(
    [
        {
            "name": "active_lines_dosed",
            "description": "every active protocol line names an active drug that has a dose rule",
            "sql": "SELECT p.code AS protocole, l.rang FROM ligne_protocole l JOIN protocole p ON p.id = l.protocole_id"
            " JOIN medicament m ON m.id = l.medicament_id WHERE p.actif AND (NOT m.actif OR NOT EXISTS"
            " (SELECT 1 FROM regle_alerte_dose r WHERE r.medicament_id = m.id));",
        },
        {
            "name": "writes_refused",
            "sql": "SELECT setval(pg_get_serial_sequence('parametre_global', 'id'), 999)",
        },
        {"name": "not_a_query", "sql": "DELETE FROM parametre_global RETURNING cle"},
        {"name": "too_slow", "sql": "SELECT 1 FROM pg_sleep(30)"},
    ]
)
BROKEN_RULE = "table: protocole\nexpectations:\n  - {name: broken rule, type: unexpected_rows, where: 't.no_such_column > 0'}\n"


@pytest.fixture(scope="module")
def module_db(pg_admin_dsn: str) -> Iterator[Callable[[str], str]]:
    """Module-scoped databases, so each state is validated once (GX runs cost seconds)."""
    created: list[str] = []

    def _make(label: str) -> str:
        name = f"gt_{label}_{uuid.uuid4().hex[:10]}"
        created.append(name)
        return seeded(pg.create_database(pg_admin_dsn, name))

    yield _make
    for name in created:
        pg.drop_database(pg_admin_dsn, name)


@pytest.fixture(scope="module")
def clean(
    module_db: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[ValidationReport, Path]:
    docs = tmp_path_factory.mktemp("docs")
    report = verify_target(
        module_db("val_clean"),
        catalog=demo_catalog(),
        settings=demo_settings(),
        probes=PROBES[:1],
        target="qualif",
        data_docs_dir=docs,
    )
    return report, docs


@pytest.fixture(scope="module")
def defective(
    module_db: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[ValidationReport, str]:
    """Every defect of DEFECTS planted in one database, plus a broken hand-written rule and a retired drug."""
    dsn = module_db("val_defects")
    for plant, _, _ in DEFECTS:
        execute(dsn, plant)
    execute(dsn, "UPDATE medicament SET actif = false WHERE code_ucd = '3400890000031'")
    suites = tmp_path_factory.mktemp("suites")
    for path in (CONFIG.parent.parent / "expectations").glob("*.yaml"):
        shutil.copy(path, suites / path.name)
    (suites / "zz_broken.yaml").write_text(BROKEN_RULE)
    report = verify_target(
        dsn,
        catalog=demo_catalog(),
        settings=demo_settings(suites_dir=str(suites), statement_timeout="1s"),
        probes=PROBES,
        target="qualif",
    )
    return report, dsn


@pytest.fixture
def demo_db(make_db: Callable[[str], str]) -> str:
    return seeded(make_db("val"))


def test_verify_target_clean_demo_passes(clean: tuple[ValidationReport, Path]) -> None:
    report, _ = clean

    assert report.ok, [r.to_dict() for r in report.expectations if not r.passed]
    kinds = {r.kind for r in report.expectations}
    assert {
        "not_null",
        "unique",
        "foreign_key",
        "logical_reference",
        "in_set",
        "a_greater_than_b",
        "smoke_probe",
    } <= kinds
    assert not report.errors


def test_verify_target_data_docs_written(clean: tuple[ValidationReport, Path]) -> None:
    report, docs = clean

    assert report.data_docs_path == str(docs / "index.html")
    page = (docs / "index.html").read_text()
    # Gardien's own page, whole and offline: every expectation named, nothing fetched from elsewhere
    for expectation in report.expectations:
        assert html.escape(expectation.name, quote=False) in page
    for remote in ("http://", "https://", "<script", "<link", "@import", "url("):
        assert remote not in page
    assert not (docs / "validations").exists()  # no Great Expectations Data Docs (CDN assets)


@pytest.mark.parametrize(("plant", "expectation", "example"), DEFECTS, ids=DEFECT_IDS)
def test_verify_target_planted_defect_fails_with_rows_named(
    defective: tuple[ValidationReport, str], plant: str, expectation: str, example: dict[str, object]
) -> None:
    report, _ = defective

    result = report.result(expectation)
    assert result.status == "failed"
    assert result.unexpected_count >= 1
    assert any(example.items() <= e.items() for e in result.examples), result.examples


def test_verify_target_only_planted_defects_fail(defective: tuple[ValidationReport, str]) -> None:
    report, _ = defective

    planted = {expectation for _, expectation, _ in DEFECTS} | {"smoke probe active_lines_dosed"}
    assert not report.ok
    assert {r.name for r in report.failed} == planted


def test_verify_target_broken_rule_reported_as_error_not_failure(
    defective: tuple[ValidationReport, str],
) -> None:
    report, _ = defective

    result = report.result("broken rule")
    assert result.status == "error"
    assert "no_such_column" in (result.error or "")
    assert any(e.startswith("broken rule:") for e in report.errors)


def test_verify_target_probe_rows_named(defective: tuple[ValidationReport, str]) -> None:
    report, _ = defective

    dosed = report.result("smoke probe active_lines_dosed")
    assert dosed.status == "failed"
    assert dosed.examples == ({"protocole": "PROT-PNEUMO", "rang": 2},)


@pytest.mark.parametrize(
    ("probe", "error"),
    [
        ("writes_refused", "read-only transaction"),
        ("not_a_query", "syntax error"),
        ("too_slow", "statement timeout"),
    ],
    ids=["write-refused", "delete-refused", "timeout"],
)
def test_verify_target_probe_cannot_run_reported_as_error(
    defective: tuple[ValidationReport, str], probe: str, error: str
) -> None:
    report, dsn = defective

    result = report.result(f"smoke probe {probe}")
    assert result.status == "error"
    assert error in (result.error or "")
    assert scalar(dsn, "SELECT count(*) FROM parametre_global") == 2  # nothing deleted
    assert scalar(dsn, "SELECT last_value FROM parametre_global_id_seq") == 2  # nothing moved


def test_validate_state_suite_names_missing_column_configuration_error(demo_db: str, tmp_path: Path) -> None:
    (tmp_path / "medicament.yaml").write_text(
        "table: medicament\nexpectations:\n  - {name: dosage known, type: not_null, column: dosage}\n"
    )
    settings = demo_settings(suites_dir=str(tmp_path))

    with pytest.raises(
        ConfigurationError, match=r"suite medicament.yaml: expectation 'dosage known': column 'dosage'"
    ):
        validate_state(demo_db, catalog=demo_catalog(), settings=settings, target="qualif")


def test_validate_state_suite_names_unmanaged_table_configuration_error(demo_db: str, tmp_path: Path) -> None:
    (tmp_path / "patient.yaml").write_text(
        "table: patient\nexpectations:\n  - {name: ipp, type: not_null, column: ipp}\n"
    )

    with pytest.raises(
        ConfigurationError, match=r"suite patient.yaml: .*table 'patient' is not a managed table"
    ):
        validate_state(
            demo_db, catalog=demo_catalog(), settings=demo_settings(suites_dir=str(tmp_path)), target="q"
        )


def test_validate_state_suite_reuses_generated_name_configuration_error(demo_db: str, tmp_path: Path) -> None:
    (tmp_path / "droit.yaml").write_text(
        "table: droit\nexpectations:\n  - {name: 'droit.code is not null (natural key)', type: not_null, column: code}\n"
    )

    with pytest.raises(ConfigurationError, match=r"used twice across suites: \['droit.code is not null"):
        validate_state(
            demo_db, catalog=demo_catalog(), settings=demo_settings(suites_dir=str(tmp_path)), target="q"
        )
