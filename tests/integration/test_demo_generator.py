"""The demo generator against the real PostgreSQL: references, ids, pending changes, idempotence, errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest
import yaml
from psycopg2 import sql
from typer.testing import CliRunner

from gardien import pg
from gardien.demo.generator import BUILDING_SUFFIX, DemoBuild, build_environments, drop_environments
from gardien.errors import ConfigurationError, EnvironmentUnavailableError, UsageError

pytestmark = pytest.mark.integration

ENVS = ("qualif", "preprod", "prod")
PAIRS = (("qualif", "preprod"), ("qualif", "prod"), ("preprod", "prod"))
CATALOG = yaml.safe_load((Path(__file__).parents[2] / "include/config/gardien.yaml").read_text())["catalog"]
TABLES = [t["name"] for t in CATALOG["tables"]]
NATURAL_KEY = {t["name"]: t["natural_key"] for t in CATALOG["tables"]}
IGNORED = {t["name"]: set(t.get("ignore", ())) for t in CATALOG["tables"]}
LOGICAL = [(t["name"], ref) for t in CATALOG["tables"] for ref in t.get("logical_references", ())]


# ---- small SQL helpers: content by natural keys, foreign keys translated to the referenced natural keys


def _query(dsn: str, query, params=()) -> list[tuple]:
    conn = pg.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()
    finally:
        conn.close()


def _foreign_keys(dsn: str, table: str) -> dict[str, str]:
    rows = _query(
        dsn,
        "SELECT a.attname, c.confrelid::regclass::text FROM pg_constraint c "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
        "WHERE c.contype = 'f' AND c.conrelid = %s::regclass",
        (f"public.{table}",),
    )
    return dict(rows)


def portable_rows(dsn: str, table: str) -> dict[tuple[str, ...], dict[str, str | None]]:
    """Natural key → {column: text}, every foreign key replaced by the referenced row's natural key."""
    columns = [
        c
        for (c,) in _query(
            dsn,
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s AND column_name <> 'id' ORDER BY ordinal_position",
            (table,),
        )
    ]
    fks = _foreign_keys(dsn, table)
    items = []
    for column in columns:
        if column in fks:
            (target_key,) = NATURAL_KEY[fks[column]]
            items.append(
                sql.SQL("(SELECT r.{}::text FROM {} r WHERE r.id = t.{})").format(
                    sql.Identifier(target_key), sql.Identifier(fks[column]), sql.Identifier(column)
                )
            )
        else:
            items.append(sql.SQL("t.{}::text").format(sql.Identifier(column)))
    query = sql.SQL("SELECT {} FROM {} t").format(sql.SQL(", ").join(items), sql.Identifier(table))
    result = {}
    for values in _query(dsn, query):
        row = dict(zip(columns, values, strict=True))
        key = tuple(row[c] for c in NATURAL_KEY[table])
        assert key not in result, f"duplicate natural key {key} in {table}"
        result[key] = row
    return result


def key_ids(dsn: str, table: str) -> dict[tuple[str, ...], int]:
    """Natural key (foreign keys translated) → this environment's id."""
    fks = _foreign_keys(dsn, table)
    parts = []
    for column in NATURAL_KEY[table]:
        if column in fks:
            (target_key,) = NATURAL_KEY[fks[column]]
            parts.append(
                sql.SQL("(SELECT r.{}::text FROM {} r WHERE r.id = t.{})").format(
                    sql.Identifier(target_key), sql.Identifier(fks[column]), sql.Identifier(column)
                )
            )
        else:
            parts.append(sql.SQL("t.{}::text").format(sql.Identifier(column)))
    query = sql.SQL("SELECT t.id, {} FROM {} t").format(sql.SQL(", ").join(parts), sql.Identifier(table))
    return {tuple(values): id_ for id_, *values in _query(dsn, query)}


def _same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    try:
        return Decimal(a) == Decimal(b)  # numeric(12,3) prints 10.000 where the manifest says 10
    except InvalidOperation:
        return a == b


def differences(before: dict, after: dict, table: str) -> set[tuple]:
    """(kind, key, field) for every row inserted, deleted or changed from ``before`` to ``after``."""
    found: set[tuple] = set()
    for key in after.keys() - before.keys():
        found.add(("insert", key, None))
    for key in before.keys() - after.keys():
        found.add(("delete", key, None))
    for key in before.keys() & after.keys():
        for column, value in after[key].items():
            if column not in IGNORED[table] and not _same(before[key][column], value):
                found.add(("update", key, column))
    return found


# ---- fixtures


def _unique_prefix() -> str:
    return f"gt_demo_{uuid.uuid4().hex[:8]}_"


@pytest.fixture(scope="module")
def demo(pg_admin_dsn: str) -> Iterator[DemoBuild]:
    """One realistic build at scale 1, shared read-only by the tests of this module."""
    prefix = _unique_prefix()
    yield build_environments(pg_admin_dsn, prefix=prefix)
    drop_environments(pg_admin_dsn, prefix=prefix)


@pytest.fixture
def prefix(pg_admin_dsn: str) -> Iterator[str]:
    """A fresh prefix for a test that builds (and mutates) its own environments."""
    value = _unique_prefix()
    yield value
    drop_environments(pg_admin_dsn, prefix=value)


# ---- references


@pytest.mark.parametrize("env", ENVS)
def test_build_every_foreign_key_resolves(demo: DemoBuild, env: str) -> None:
    dsn = demo.dsn(env)
    checked = 0
    for table in TABLES:
        for column, target in _foreign_keys(dsn, table).items():
            orphans = _query(
                dsn,
                sql.SQL(
                    "SELECT count(*) FROM {} c LEFT JOIN {} p ON p.id = c.{} WHERE c.{} IS NOT NULL AND p.id IS NULL"
                ).format(
                    sql.Identifier(table),
                    sql.Identifier(target),
                    sql.Identifier(column),
                    sql.Identifier(column),
                ),
            )[0][0]
            assert orphans == 0, f"{env}: {orphans} {table}.{column} rows point to no {target}"
            checked += 1
    assert checked == 11  # the schema's foreign keys all survived the load (dropped and restored)


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize(("table", "reference"), LOGICAL, ids=[f"{t}.{r['column']}" for t, r in LOGICAL])
def test_build_every_logical_reference_resolves(
    demo: DemoBuild, env: str, table: str, reference: dict
) -> None:
    target_table, target_column = reference["references"].split(".")
    values = [
        v
        for (v,) in _query(
            demo.dsn(env),
            sql.SQL("SELECT {}::text FROM {}").format(
                sql.Identifier(reference["column"]), sql.Identifier(table)
            ),
        )
    ]
    codes = {
        c
        for (c,) in _query(
            demo.dsn(env),
            sql.SQL("SELECT {} FROM {}").format(sql.Identifier(target_column), sql.Identifier(target_table)),
        )
    }
    separator = reference.get("separator")
    used = [p for v in values if v for p in (v.split(separator) if separator else [v])]
    assert used, f"no {table}.{reference['column']} value to check"
    assert set(used) <= codes, f"{env}: dangling {set(used) - codes}"


@pytest.mark.parametrize("env", ENVS)
def test_build_unit_tree_is_deep_and_spans_sites(demo: DemoBuild, env: str) -> None:
    depth = _query(
        demo.dsn(env),
        "WITH RECURSIVE tree(id, depth) AS ("
        " SELECT id, 1 FROM unite_fonctionnelle WHERE parent_id IS NULL"
        " UNION ALL SELECT u.id, t.depth + 1 FROM unite_fonctionnelle u JOIN tree t ON u.parent_id = t.id)"
        " SELECT max(depth), count(*) FROM tree",
    )[0]
    assert depth[0] >= 3
    assert (
        depth[1] == _query(demo.dsn(env), "SELECT count(*) FROM unite_fonctionnelle")[0][0]
    )  # no cycle, no orphan
    sites = _query(demo.dsn(env), "SELECT finess FROM etablissement")
    assert 2 <= len(sites) <= 3
    assert all(len(f) == 9 and f.isdigit() for (f,) in sites)


# ---- ids and content


@pytest.mark.parametrize("table", TABLES)
def test_build_ids_differ_between_environments_for_every_natural_key(demo: DemoBuild, table: str) -> None:
    ids = {env: key_ids(demo.dsn(env), table) for env in ENVS}
    for left, right in PAIRS:
        common = ids[left].keys() & ids[right].keys()
        assert common, f"{table}: {left} and {right} share no natural key"
        same = [k for k in common if ids[left][k] == ids[right][k]]
        assert not same, f"{table}: {left} and {right} give the same id to {same[:3]}"


@pytest.mark.parametrize("table", TABLES)
def test_build_preprod_equals_prod_in_content(demo: DemoBuild, table: str) -> None:
    prod = portable_rows(demo.dsn("prod"), table)
    assert prod
    assert portable_rows(demo.dsn("preprod"), table) == prod


def test_build_qualif_differs_from_prod_exactly_by_the_manifest(demo: DemoBuild) -> None:
    declared = {("update" if c.kind == "soft_delete" else c.kind, c.key, c.field) for c in demo.changes}
    for table in TABLES:
        actual = differences(
            portable_rows(demo.dsn("prod"), table), portable_rows(demo.dsn("qualif"), table), table
        )
        expected = {
            (k, key, f)
            for (k, key, f) in declared
            if any(c.table == table and c.key == key for c in demo.changes)
        }
        assert actual == expected, f"{table}: undeclared {actual - expected}, missing {expected - actual}"


EXPECTED_KINDS = [
    ("insert", "medicament", None, "new drug"),
    ("insert", "regle_alerte_dose", None, "dose-alert rule of the new drug"),
    ("insert", "protocole", None, "new protocol"),
    ("insert", "ligne_protocole", None, "line of the new protocol"),
    ("insert", "profil_droit", None, "new right granted"),
    ("insert", "unite_fonctionnelle", None, "new care unit"),
    ("update", "unite_fonctionnelle", "libelle", "renamed label"),
    ("soft_delete", "unite_fonctionnelle", "actif", "retired unit"),
    ("update", "regle_alerte_dose", "dose_max", "changed dose limit"),
    ("update", "parametre_global", "valeur", "changed global parameter"),
    ("delete", "champ_formulaire", None, "form field removed"),
    ("delete", "examen_labo", None, "lab test removed"),
]


@pytest.mark.parametrize(
    ("kind", "table", "field", "description"),
    EXPECTED_KINDS,
    ids=[e[3].replace(" ", "-") for e in EXPECTED_KINDS],
)
def test_build_pending_change_present_in_qualif_absent_from_prod(
    demo: DemoBuild, kind: str, table: str, field: str | None, description: str
) -> None:
    matching = [
        c
        for c in demo.changes
        if (c.kind, c.table, c.field) == (kind, table, field) and description in c.description
    ]
    assert matching, f"no {kind} of {table} ({description}) in the manifest"
    qualif, prod = portable_rows(demo.dsn("qualif"), table), portable_rows(demo.dsn("prod"), table)
    for change in matching:
        if kind == "insert":
            assert change.key in qualif and change.key not in prod
        elif kind == "delete":
            assert change.key in prod and change.key not in qualif
        else:
            assert _same(qualif[change.key][field], change.after)
            assert _same(prod[change.key][field], change.before)
            assert not _same(change.before, change.after)


def test_build_new_protocol_uses_the_new_drug(demo: DemoBuild) -> None:
    new_drugs = {c.key[0] for c in demo.changes if (c.kind, c.table) == ("insert", "medicament")}
    new_protocols = {c.key[0] for c in demo.changes if (c.kind, c.table) == ("insert", "protocole")}
    lines = portable_rows(demo.dsn("qualif"), "ligne_protocole")
    used = {row["medicament_id"] for key, row in lines.items() if key[0] in new_protocols}
    assert new_drugs & used
    rules = portable_rows(demo.dsn("qualif"), "regle_alerte_dose")
    assert all(any(k[0] == drug for k in rules) for drug in new_drugs)


# ---- idempotence and recovery


def _oids(admin: str, prefix: str) -> dict[str, int]:
    return dict(_query(admin, "SELECT datname, oid FROM pg_database WHERE datname LIKE %s", (prefix + "%",)))


def test_build_rerun_with_same_parameters_is_a_no_op(demo: DemoBuild, pg_admin_dsn: str) -> None:
    before = _oids(pg_admin_dsn, demo.prefix)
    lines: list[str] = []
    again = build_environments(pg_admin_dsn, prefix=demo.prefix, progress=lines.append)
    assert again.up_to_date
    assert _oids(pg_admin_dsn, demo.prefix) == before
    assert all("up to date" in line for line in lines) and len(lines) == 3
    assert again.changes == demo.changes  # the manifest is read back from qualif


def _drop_marker(dsn: str) -> None:
    conn = pg.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("DELETE FROM gardien_demo.build_info")  # as if the build stopped before its last write
    conn.commit()
    conn.close()


def _edit_prod(dsn: str) -> None:
    conn = pg.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("UPDATE parametre_global SET valeur = '5' WHERE cle = 'SESSION.TIMEOUT_MINUTES'")
    conn.commit()
    conn.close()


UP, BUILT = "up to date", "built"
# Steps run in order on one set of environments: (what happens first, build parameters, statuses, reason
# given for the rebuilt environments, or for all when nothing is rebuilt).
RECOVERY_STEPS = [
    ("nothing", {}, (BUILT, BUILT, BUILT), "does not exist yet"),
    ("drop-preprod-marker", {}, (UP, BUILT, UP), "without a completion marker"),
    ("leave-half-built-prod", {}, (UP, UP, UP), "completion marker matches"),
    ("edit-prod", {}, (UP, UP, UP), "completion marker matches"),
    ("nothing", {"verify": True}, (UP, UP, BUILT), "content changed since it was built"),
    ("nothing", {"verify": True}, (UP, UP, UP), "completion marker matches"),
    ("nothing", {"seed": 7}, (BUILT, BUILT, BUILT), "was built with scale=1 seed=42"),
    ("nothing", {"seed": 7, "force": True}, (BUILT, BUILT, BUILT), "rebuild forced"),
    ("nothing", {"seed": 7}, (UP, UP, UP), "completion marker matches"),
]


def test_build_recovers_from_interruptions_edits_and_parameter_changes(
    pg_admin_dsn: str, prefix: str
) -> None:
    debris = f"{prefix}prod{BUILDING_SUFFIX}"
    for step, (before, params, statuses, reason) in enumerate(RECOVERY_STEPS):
        if before == "drop-preprod-marker":
            _drop_marker(pg.dsn_for_database(pg_admin_dsn, f"{prefix}preprod"))
        elif before == "leave-half-built-prod":
            pg.create_database(pg_admin_dsn, debris)
        elif before == "edit-prod":
            _edit_prod(pg.dsn_for_database(pg_admin_dsn, f"{prefix}prod"))
        lines: list[str] = []
        result = build_environments(pg_admin_dsn, prefix=prefix, progress=lines.append, **params)
        assert tuple(e.status for e in result.environments) == statuses, f"step {step}: {before} {params}"
        explained = [e for e in result.environments if e.status == BUILT] or list(result.environments)
        assert all(reason in e.reason for e in explained), f"step {step}: {[e.reason for e in explained]}"
        if BUILT in statuses:
            assert any(reason in line for line in lines), f"step {step}: {lines}"
        if before == "leave-half-built-prod":
            assert not pg.database_exists(pg_admin_dsn, debris)
            assert any("interrupted build" in line for line in lines)
    final = portable_rows(result.dsn("prod"), "parametre_global")
    assert final[("SESSION.TIMEOUT_MINUTES",)]["valeur"] == "15"  # the edit was undone by the rebuild
    assert portable_rows(result.dsn("preprod"), "ligne_protocole") == portable_rows(
        result.dsn("prod"), "ligne_protocole"
    )


# ---- bad input


@pytest.mark.parametrize(
    ("dsn", "error", "match"),
    [
        (
            "postgresql://postgres@127.0.0.1:1/postgres",
            EnvironmentUnavailableError,
            "cannot connect.*GARDIEN_PG_DSN",
        ),
        (
            "host=127.0.0.1 port=5432 user=gardien_no_such_role_x dbname=postgres",
            EnvironmentUnavailableError,
            "cannot connect",
        ),
        ("not a dsn at all", ConfigurationError, "invalid PostgreSQL DSN"),
    ],
    ids=["nothing-listens", "unknown-role", "malformed"],
)
def test_build_bad_admin_dsn_raises_clear_error(dsn: str, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        build_environments(dsn, prefix=_unique_prefix())


def test_build_bench_larger_than_scale_raises_usage_error(pg_admin_dsn: str, prefix: str) -> None:
    with pytest.raises(UsageError, match="only has 500"):
        build_environments(pg_admin_dsn, prefix=prefix, bench_changes=(400, 0, 200))
    assert not any(pg.database_exists(pg_admin_dsn, f"{prefix}{env}") for env in ENVS)


# ---- scale and benchmark changes


@pytest.fixture(scope="module")
def bench(pg_admin_dsn: str) -> Iterator[DemoBuild]:
    """A moderate scale (20,000 protocol lines) with planted benchmark changes."""
    prefix = _unique_prefix()
    yield build_environments(pg_admin_dsn, prefix=prefix, scale=40, bench_changes=(60, 30, 10))
    drop_environments(pg_admin_dsn, prefix=prefix)


@pytest.mark.parametrize("env", ENVS)
def test_build_moderate_scale_keeps_references_and_line_count(bench: DemoBuild, env: str) -> None:
    dsn = bench.dsn(env)
    expected = 20_000 + (30 - 10 if env == "qualif" else 0)
    assert bench.environment(env).row_counts["ligne_protocole"] == expected
    assert _query(dsn, "SELECT count(*) FROM ligne_protocole")[0][0] == expected
    orphans = _query(
        dsn,
        "SELECT count(*) FROM ligne_protocole l LEFT JOIN protocole p ON p.id = l.protocole_id "
        "LEFT JOIN medicament m ON m.id = l.medicament_id LEFT JOIN unite_mesure u ON u.id = l.unite_id "
        "WHERE p.id IS NULL OR m.id IS NULL OR u.id IS NULL",
    )[0][0]
    dangling = _query(
        dsn,
        "SELECT (SELECT count(*) FROM profil p, unnest(string_to_array(p.uf_autorisees, ';')) AS uf(code) "
        "        WHERE NOT EXISTS (SELECT 1 FROM unite_fonctionnelle u WHERE u.code = uf.code))"
        "     + (SELECT count(*) FROM protocole p WHERE p.service_code IS NOT NULL "
        "        AND NOT EXISTS (SELECT 1 FROM unite_fonctionnelle u WHERE u.code = p.service_code))",
    )[0][0]
    assert (orphans, dangling) == (0, 0)


def test_build_moderate_scale_ids_differ_for_every_line(bench: DemoBuild) -> None:
    ids = {env: key_ids(bench.dsn(env), "ligne_protocole") for env in ENVS}
    for left, right in PAIRS:
        common = ids[left].keys() & ids[right].keys()
        assert len(common) >= 20_000 - 70
        assert all(ids[left][k] != ids[right][k] for k in common)


def test_build_bench_changes_plants_exact_counts(bench: DemoBuild) -> None:
    expected = {"update ligne_protocole": 60, "insert ligne_protocole": 30, "delete ligne_protocole": 10}
    assert bench.change_summary() == expected
    found: dict[str, int] = {}
    for table in TABLES:
        prod, qualif = portable_rows(bench.dsn("prod"), table), portable_rows(bench.dsn("qualif"), table)
        for kind, _key, _field in differences(prod, qualif, table):
            found[f"{kind} {table}"] = found.get(f"{kind} {table}", 0) + 1
    assert found == expected


# ---- command line


def test_cli_demo_build_json_reports_up_to_date(demo: DemoBuild, pg_admin_dsn: str) -> None:
    from gardien.cli.demo import demo_app

    outcome = CliRunner().invoke(
        demo_app, ["build", "--prefix", demo.prefix, "--json", "--admin-dsn", pg_admin_dsn]
    )
    assert outcome.exit_code == 0, outcome.output
    payload = json.loads(outcome.stdout)
    assert payload["up_to_date"] is True
    assert [e["status"] for e in payload["environments"]] == ["up to date"] * 3
    assert len(payload["changes"]) == len(demo.changes)


def test_python_m_gardien_demo_bad_dsn_exits_with_unavailable_code() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gardien.demo",
            "build",
            "--admin-dsn",
            "postgresql://postgres@127.0.0.1:1/postgres",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EnvironmentUnavailableError.exit_code
    assert "cannot connect" in done.stderr


def test_build_overlong_prefix_raises_usage_error(pg_admin_dsn: str) -> None:
    # Refused before anything is touched: PostgreSQL would silently truncate a name past 63 bytes.
    with pytest.raises(UsageError, match="prefix 'x+' is not allowed"):
        build_environments(pg_admin_dsn, prefix="x" * 60)
