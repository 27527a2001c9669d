"""``gardien validate`` end to end on real PostgreSQL, with the engine's own diff and apply in the rehearsal."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_validation_support import CONFIG, as_uri, demo_catalog, execute, scalar, seeded

from gardien import pg
from gardien.cli.main import main
from gardien.diff import diff
from gardien.errors import ValidationFailedError

pytestmark = pytest.mark.integration

NEW_DRUG = (
    "INSERT INTO medicament (code_ucd, libelle, code_atc, forme, unite_id) VALUES"
    " ('3400890000048', 'IBUPROFENE 400 mg cp', 'M01AE01', 'CPR', 1);"
    " INSERT INTO regle_alerte_dose (medicament_id, population, dose_min, dose_max, unite_id)"
    " SELECT id, 'ADULTE', {dose_min}, 1200, 1 FROM medicament WHERE code_ucd = '3400890000048'"
)


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Run ``gardien`` in-process (GX stays imported between tests); return exit code, stdout, stderr."""
    monkeypatch.setenv("GARDIEN_PG_DSN", pg.admin_dsn())
    argv = [as_uri(a) if a.startswith("user=") else a for a in args]
    monkeypatch.setattr(sys, "argv", ["gardien", *argv, "-c", str(CONFIG)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def release(make_db: Callable[[str], str], tmp_path: Path) -> Callable[[str], tuple[Path, str]]:
    """Build qualif (seed + ``change``) and prod (seed), capture the changeset with the engine's diff."""

    def _build(change: str) -> tuple[Path, str]:
        qualif, prod = seeded(make_db("cli_q")), seeded(make_db("cli_p"))
        execute(qualif, change)
        changeset = diff(
            qualif, prod, catalog_config=demo_catalog(), source_label="qualif", target_label="prod"
        )
        path = tmp_path / "changeset.json"
        path.write_text(changeset.to_json(), encoding="utf-8")
        return path, prod

    return _build


def test_validate_cli_rehearsed_clean_changeset_exit_zero(
    release: Callable[[str], tuple[Path, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # 1 of 2 protocols updated: 50%, but within the rows always allowed (min_changes)
    changeset, prod = release(
        NEW_DRUG.format(dose_min=200) + "; UPDATE protocole SET libelle = 'Douleur aiguë'"
        " WHERE code = 'PROT-DOULEUR'"
    )

    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "validate",
        prod,
        "--changeset",
        str(changeset),
        "--json",
        "--data-docs",
        str(tmp_path / "dd"),
    )

    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] and not report["trivial"]
    assert any(e["kind"] == "blast_radius" for e in report["expectations"])
    assert (tmp_path / "dd" / "index.html").is_file()
    assert scalar(prod, "SELECT count(*) FROM medicament") == 3  # only the scratch copy was changed


def test_validate_cli_rehearsed_defect_exit_seven_rows_named(
    release: Callable[[str], tuple[Path, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    changeset, prod = release(NEW_DRUG.format(dose_min=5000))

    code, out, err = run_cli(monkeypatch, capsys, "validate", prod, "--changeset", str(changeset), "--json")

    assert code == 7
    assert "validation failed" in err
    failed = [e for e in json.loads(out)["expectations"] if e["status"] == "failed"]
    assert [(e["name"], e["examples"]) for e in failed] == [
        (
            "regle_alerte_dose dose_min <= dose_max",
            [
                {
                    "medicament": "3400890000048",
                    "population": "ADULTE",
                    "dose_max": "1200.000",
                    "dose_min": "5000.000",
                }
            ],
        )
    ]


def test_validate_cli_empty_changeset_trivial(
    release: Callable[[str], tuple[Path, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    changeset, prod = release("SELECT 1")

    code, out, _ = run_cli(monkeypatch, capsys, "validate", prod, "--changeset", str(changeset))

    assert code == 0
    assert "validates trivially" in out and "empty changeset" in out


def test_validate_cli_state_and_verify_text_output(
    make_db: Callable[[str], str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prod = seeded(make_db("cli_v"))
    execute(prod, "UPDATE medicament SET actif = false WHERE code_ucd = '3400890000024'")

    state_code, state_out, _ = run_cli(monkeypatch, capsys, "validate", prod)
    verify_code, verify_out, _ = run_cli(monkeypatch, capsys, "validate", prod, "--verify")

    assert state_code == 0 and "OK" in state_out
    assert verify_code == 7
    assert "FAILED: smoke probe active_protocol_lines_have_active_dosed_drugs" in verify_out
    assert "protocole='PROT-PNEUMO', rang=1" in verify_out


def test_validate_cli_changeset_with_verify_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(
        monkeypatch, capsys, "validate", "prod", "--verify", "--changeset", str(tmp_path / "x.json")
    )

    assert code == 2
    assert "pick one" in err


def test_validate_cli_list_shows_generated_and_suites_without_running(
    make_db: Callable[[str], str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prod = seeded(make_db("cli_l"))

    code, out, _ = run_cli(monkeypatch, capsys, "validate", prod, "--list", "--json")

    specs = {s["name"]: s for s in json.loads(out)}
    assert code == 0
    assert (
        specs["profil.uf_autorisees → unite_fonctionnelle.code resolves exactly (logical reference)"][
            "separator"
        ]
        == ";"
    )
    assert specs["regle_alerte_dose dose_min <= dose_max"]["suite"] == "regle_alerte_dose.yaml"


PARAMS = "INSERT INTO parametre_global (cle, valeur) SELECT 'P' || i, 'v' FROM generate_series(1, 20) AS i"


@pytest.mark.parametrize(
    ("extra", "code", "said"),
    [
        ((), 7, "accept_blast_radius=parametre_global"),
        (("--accept-blast-radius", "parametre_global"), 3, "needs a reason"),
        (
            ("--accept-blast-radius", "parametre_global", "--reason", "yearly review"),
            0,
            "accepted for this release",
        ),
    ],
    ids=["refused-says-how-to-accept", "accepted-without-reason", "accepted-with-reason"],
)
def test_validate_cli_blast_radius_refusal_and_acceptance_for_one_release(
    make_db: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    code: int,
    said: str,
) -> None:
    qualif, prod = seeded(make_db("cli_q")), seeded(make_db("cli_p"))
    for dsn in (qualif, prod):
        execute(dsn, PARAMS)
    execute(qualif, "UPDATE parametre_global SET valeur = 'changed' WHERE cle LIKE 'P%'")  # 20 of 22 rows
    changeset = diff(qualif, prod, catalog_config=demo_catalog(), source_label="qualif", target_label="prod")
    path = tmp_path / "changeset.json"
    path.write_text(changeset.to_json(), encoding="utf-8")

    got, out, err = run_cli(monkeypatch, capsys, "validate", prod, "--changeset", str(path), "--json", *extra)

    assert got == code, err
    assert said in out + err


def test_release_accepts_blast_radius_for_itself_recorded_with_who_and_why(
    make_db: Callable[[str], str], tmp_path: Path
) -> None:
    import datetime as dt

    from gardien import ledger
    from gardien.config import load_config
    from gardien.release.gate import validate_release
    from gardien.release.service import ReleaseService, StepContext

    qualif, prod, ledger_dsn = seeded(make_db("rel_q")), seeded(make_db("rel_p")), make_db("rel_l")
    conn = pg.connect(ledger_dsn)  # `gardien ledger migrate`, as the ledger's owner
    try:
        ledger.migrate(conn)
        conn.commit()
    finally:
        conn.close()
    for dsn in (qualif, prod):
        execute(dsn, PARAMS)
    execute(qualif, "UPDATE parametre_global SET valeur = 'changed' WHERE cle LIKE 'P%'")
    config = load_config(CONFIG, environ={"GARDIEN_PG_DSN": pg.admin_dsn()})
    envs = {
        name: env.model_copy(update={"dsn": {"qualif": qualif}.get(name, prod), "database": None})
        for name, env in config.environments.items()
    }
    config = config.model_copy(
        update={
            "environments": envs,
            "ledger": config.ledger.model_copy(update={"dsn": ledger_dsn, "database": None}),
            "source_path": str(CONFIG),
        }
    )
    svc = ReleaseService(config, "standard", artifacts=tmp_path)
    ctx = StepContext(actor="airflow", now=dt.datetime.now(dt.UTC))  # a past "now" marks scratches stale
    svc.open(
        release_id="R-blast",
        requested_by="pharma.adjoint",
        reason="yearly formulary review",
        window_start=None,
        window_end=None,
        ctx=ctx,
    )
    svc.extract("R-blast", ctx=ctx)

    with pytest.raises(ValidationFailedError, match="accept_blast_radius=parametre_global"):
        validate_release(svc, "R-blast", ctx=ctx)
    outcome = validate_release(svc, "R-blast", ctx=ctx, accept_blast_radius=("parametre_global",))

    assert outcome["ok"]
    conn = pg.connect(ledger_dsn)
    try:
        [accepted] = [
            e for e in ledger.list_events(conn, release_id="R-blast") if e.kind.endswith("accepted")
        ]
    finally:
        conn.close()
    assert accepted.kind == "validation.blast_radius_accepted"
    assert (
        accepted.payload["accepted_by"] == "pharma.adjoint" and accepted.reason == "yearly formulary review"
    )
