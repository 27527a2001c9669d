"""The demo content without a database: reference codes, determinism, keys, references, change sets."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gardien.cli.demo import parse_bench_changes
from gardien.demo import changes, content, data, formulary
from gardien.demo.content import TABLE_BY_NAME, TABLES, Dataset, generate_dataset, row_key
from gardien.demo.generator import check_parameters
from gardien.demo.loader import _text, id_stride
from gardien.errors import UsageError

LOGICAL = (("profil", "uf_autorisees", ";"), ("protocole", "service_code", None))


@pytest.fixture(scope="module")
def prod() -> Dataset:
    return generate_dataset(scale=3, seed=42)


@pytest.fixture(scope="module")
def realistic(prod: Dataset) -> tuple[Dataset, tuple[changes.PendingChange, ...]]:
    return changes.realistic_changes(prod)


def _keys(dataset: Dataset, table: str) -> list[object]:
    return [row_key(TABLE_BY_NAME[table], row) for row in dataset.rows[table]]


def _dangling(dataset: Dataset) -> list[str]:
    problems = []
    for spec in TABLES:
        for column, target in spec.references:
            known = set(_keys(dataset, target))
            i = spec.index(column)
            problems += [
                f"{spec.name}.{column}={r[i]}" for r in dataset.rows[spec.name] if r[i] not in known | {None}
            ]
    codes = set(_keys(dataset, "unite_fonctionnelle"))
    for table, column, separator in LOGICAL:
        i = TABLE_BY_NAME[table].index(column)
        for row in dataset.rows[table]:
            values = (row[i] or "").split(separator) if separator else [row[i]]
            problems += [f"{table}.{column}={v}" for v in values if v and v not in codes]
    units = {code for code, _label in data.UNITES_MESURE}
    problems += [
        f"examen_labo.unite_code={r[3]}" for r in dataset.rows["examen_labo"] if r[3] and r[3] not in units
    ]
    return problems


# ---- reference codes


@pytest.mark.parametrize(
    ("number", "valid"),
    [("370000481", True), ("370000482", False), (data.ETABLISSEMENTS[0][3], True), ("12345678a", False)],
    ids=["real-chu-tours", "wrong-check-digit", "demo-site", "not-digits"],
)
def test_luhn_valid_known_numbers_checked(number: str, valid: bool) -> None:
    assert data.luhn_valid(number) is valid


def test_etablissements_finess_nine_digits_luhn_valid_and_unique() -> None:
    numbers = [f for _s, _n, _v, f in data.ETABLISSEMENTS]
    assert all(len(f) == 9 and data.luhn_valid(f) for f in numbers)
    assert len(set(numbers)) == len(numbers) and 2 <= len(numbers) <= 3


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        (formulary.ucd13(1000), True),
        ("3400890010000", False),
        ("340089001000", False),
        ("1234567890128", False),
    ],
    ids=["generated", "wrong-check-digit", "twelve-digits", "foreign-prefix"],
)
def test_ucd13_valid_codes_checked(code: str, valid: bool) -> None:
    assert formulary.ucd13_valid(code) is valid


def test_drugs_have_atc_codes_and_known_units() -> None:
    units = {code for code, _label in data.UNITES_MESURE}
    for drug in (*formulary.DRUGS, formulary.NEW_DRUG):
        assert len(drug.atc) == 7 and drug.atc[0].isalpha(), drug
        assert drug.unite in units and (drug.pediatric is None or drug.pediatric[2] in units), drug
    assert formulary.NEW_DRUG.key not in {d.key for d in formulary.DRUGS}


# ---- generated content


def test_generate_dataset_same_seed_same_content_other_seed_differs() -> None:
    first, again, other = (generate_dataset(scale=1, seed=s) for s in (42, 42, 43))
    assert first.rows == again.rows
    assert first.rows["ligne_protocole"] != other.rows["ligne_protocole"]


@pytest.mark.parametrize("scale", [1, 3, 40], ids=["scale-1", "scale-3", "scale-40"])
def test_generate_dataset_line_count_exactly_linear(scale: int) -> None:
    dataset = generate_dataset(scale=scale, seed=1)
    assert len(dataset.rows["ligne_protocole"]) == content.LINES_PER_SCALE * scale
    ranks = [r[1] for r in dataset.rows["ligne_protocole"]]
    assert 1 <= min(ranks) and max(ranks) <= 19


@pytest.mark.parametrize("table", [t.name for t in TABLES])
def test_generate_dataset_natural_keys_unique_per_table(prod: Dataset, realistic, table: str) -> None:
    for dataset in (prod, realistic[0]):
        keys = _keys(dataset, table)
        assert keys and len(set(keys)) == len(keys)


def test_generate_dataset_every_reference_resolves(prod: Dataset, realistic) -> None:
    assert _dangling(prod) == []
    assert _dangling(realistic[0]) == []


def test_generate_dataset_some_protocols_group_wide(prod: Dataset) -> None:
    services = [r[2] for r in prod.rows["protocole"]]
    assert None in services and any(services)


# ---- change sets


def test_realistic_changes_cover_every_kind_and_leave_prod_intact(prod: Dataset, realistic) -> None:
    before = generate_dataset(scale=3, seed=42)
    qualif, pending = realistic
    assert {c.kind for c in pending} == {"insert", "update", "soft_delete", "delete"}
    assert prod.rows == before.rows  # the production dataset was not mutated
    for change in pending:
        keys = {
            tuple(map(str, k)) if isinstance(k, tuple) else (str(k),) for k in _keys(qualif, change.table)
        }
        assert (change.key in keys) is (change.kind != "delete"), change
    assert sum(qualif.appended.values()) == sum(c.kind == "insert" for c in pending)


@pytest.mark.parametrize(
    ("counts", "lines_after"),
    [
        ((0, 0, 0), 1500),
        ((100, 0, 0), 1500),
        ((60, 30, 10), 1520),
        ((0, 0, 1500), 0),
        ((1000, 700, 500), 1700),
    ],
    ids=["none", "updates-only", "mixed", "delete-all", "heavy"],
)
def test_bench_changes_plant_exact_counts(
    prod: Dataset, counts: tuple[int, int, int], lines_after: int
) -> None:
    updates, inserts, deletes = counts
    qualif, pending = changes.bench_changes(prod, updates=updates, inserts=inserts, deletes=deletes, seed=5)
    assert [sum(c.kind == k for c in pending) for k in ("update", "insert", "delete")] == list(counts)
    assert len(qualif.rows["ligne_protocole"]) == lines_after
    touched = [c.key for c in pending]
    assert len(set(touched)) == len(touched)  # no line both updated and deleted, no insert on a freed key
    prod_keys = {(r[0], str(r[1])) for r in prod.rows["ligne_protocole"]}
    assert all((c.key in prod_keys) is (c.kind != "insert") for c in pending)
    assert _dangling(qualif) == []


@pytest.mark.parametrize(
    ("counts", "match"),
    [((-1, 0, 0), "must be >= 0"), ((1000, 0, 501), "only has 1500"), ((1501, 0, 0), "raise --scale")],
    ids=["negative", "too-many-combined", "too-many-updates"],
)
def test_bench_changes_impossible_counts_raise_usage_error(prod: Dataset, counts, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        changes.bench_changes(prod, updates=counts[0], inserts=counts[1], deletes=counts[2], seed=1)


# ---- parameters, encoding


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prefix": "Gardien_"}, "prefix 'Gardien_' is not allowed"),
        ({"prefix": "1x_"}, "not starting with a digit"),
        ({"prefix": "a" * 48}, "is not allowed"),
        ({"prefix": "drop;table"}, "is not allowed"),
        ({"scale": 0}, "scale must be between 1 and 20,000"),
        ({"scale": 20_001}, "would overflow the integer ids"),
        ({"seed": -1}, "seed must be between 0"),
        ({"seed": 2**63}, "seed must be between 0"),
        ({"bench_changes": (1, 2)}, "three counts"),
        ({"bench_changes": (1, -2, 3)}, "three counts"),
    ],
    ids=[
        "upper-case",
        "leading-digit",
        "too-long",
        "punctuation",
        "zero-scale",
        "huge-scale",
        "negative-seed",
        "seed-past-bigint",
        "two-counts",
        "negative-count",
    ],
)
def test_check_parameters_bad_input_raises_usage_error(kwargs: dict, match: str) -> None:
    params = {"prefix": "gardien_", "scale": 1, "bench_changes": None, "seed": 42} | kwargs
    with pytest.raises(UsageError, match=match):
        check_parameters(**params)


def test_check_parameters_limits_accepted() -> None:
    check_parameters(prefix="a" * 47, scale=20_000, bench_changes=(0, 0, 0), seed=2**63 - 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, None), ("10000,5000,1000", (10000, 5000, 1000)), (" 1, 2 ,3", (1, 2, 3)), ("4:5:6", (4, 5, 6))],
    ids=["absent", "commas", "spaces", "colons"],
)
def test_parse_bench_changes_valid_forms(text: str | None, expected) -> None:
    assert parse_bench_changes(text) == expected


@pytest.mark.parametrize(
    "text", ["1,2", "1,2,3,4", "a,b,c", "1,-2,3", ""], ids=["two", "four", "letters", "neg", "empty"]
)
def test_parse_bench_changes_malformed_raises_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="UPDATES,INSERTS,DELETES"):
        parse_bench_changes(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, r"\N"),
        (True, "t"),
        (False, "f"),
        (12, "12"),
        ("a\tb\\c\nd\re", "a\\tb\\\\c\\nd\\re"),
        ("µg/kg", "µg/kg"),
    ],
    ids=["null", "true", "false", "int", "specials", "unicode"],
)
def test_copy_text_escapes_values(value: object, expected: str) -> None:
    assert _text(value) == expected


def test_id_stride_power_of_ten_above_largest_environment(prod: Dataset, realistic) -> None:
    strides = id_stride(prod, realistic[0])
    assert strides["ligne_protocole"] == 10_000  # 1,504 lines in qualif
    assert strides["etablissement"] == 10
    assert all(strides[t.name] > len(realistic[0].rows[t.name]) for t in TABLES)


def test_generator_import_does_not_import_airflow() -> None:
    code = "import sys, gardien.demo.generator, gardien.cli.demo; print('airflow' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["build", "--scale", "abc"], 2, "Invalid value for '--scale'"),
        (["build", "--scale", "0"], 2, "scale must be between 1"),
        (["build", "--bench-changes", "1,2"], 2, "UPDATES,INSERTS,DELETES"),
        (["build", "--prefix", "Bad-Prefix"], 2, "prefix 'Bad-Prefix' is not allowed"),
        (["explode"], 2, "No such command"),
    ],
    ids=["scale-not-int", "scale-zero", "bench-two-counts", "bad-prefix", "unknown-command"],
)
def test_demo_main_bad_arguments_exit_with_usage_code(
    argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from gardien.cli.demo import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == code
    assert message in " ".join(capsys.readouterr().err.split())
