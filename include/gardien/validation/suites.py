"""Expectation specs: generated from the catalog and the database's foreign keys, or read from suite files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gardien.config import CatalogConfig, LogicalReference
from gardien.errors import ConfigurationError
from gardien.validation.introspect import SchemaFacts

GENERATED = "generated"

# kind → (required parameters, optional parameters); columns are checked against the database.
HAND_KINDS: dict[str, tuple[set[str], set[str]]] = {
    "not_null": ({"column"}, set()),
    "unique": ({"columns"}, set()),
    "in_set": ({"column", "value_set"}, set()),
    "between": ({"column"}, {"min", "max", "strict_min", "strict_max"}),
    "match_regex": ({"column", "regex"}, set()),
    "a_greater_than_b": ({"column_a", "column_b"}, {"or_equal"}),
    "unexpected_rows": ({"where"}, set()),
}
_ENTRY_KEYS = {"name", "type", "description"}


@dataclass(frozen=True, slots=True)
class ExpectationSpec:
    """One expectation, independent of Great Expectations: what to check, on which table, from which suite.

    ``columns`` are the checked table's columns; ``params`` hold the kind's other settings (a value set,
    bounds, a referenced table, a row predicate...).
    """

    name: str
    table: str
    kind: str
    suite: str
    columns: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def column(self) -> str:
        return self.columns[0]


def generate_specs(catalog: CatalogConfig, facts: SchemaFacts) -> list[ExpectationSpec]:
    """The expectations every managed table gets from the catalog and the live schema.

    Natural key not null and unique (compound when composite), every database foreign key among managed
    tables resolves, every declared logical reference resolves by exact match.
    """
    specs: list[ExpectationSpec] = []
    for table in catalog.tables:
        nk = tuple(table.natural_key)
        for column in nk:
            specs.append(
                ExpectationSpec(
                    name=f"{table.name}.{column} is not null (natural key)",
                    table=table.name,
                    kind="not_null",
                    suite=GENERATED,
                    columns=(column,),
                )
            )
        specs.append(
            ExpectationSpec(
                name=f"{table.name}: natural key ({', '.join(nk)}) is unique",
                table=table.name,
                kind="unique",
                suite=GENERATED,
                columns=nk,
            )
        )
        for fk in facts.fks_from(table.name):
            specs.append(
                ExpectationSpec(
                    name=f"{table.name}.{','.join(fk.columns)} → {fk.ref_table} resolves (foreign key {fk.name})",
                    table=table.name,
                    kind="foreign_key",
                    suite=GENERATED,
                    columns=fk.columns,
                    params={"ref_table": fk.ref_table, "ref_columns": list(fk.ref_columns)},
                )
            )
        for ref in table.logical_references:
            specs.append(
                ExpectationSpec(
                    name=f"{table.name}.{ref.column} → {ref.label} resolves exactly (logical reference)",
                    table=table.name,
                    kind="logical_reference",
                    suite=GENERATED,
                    columns=(ref.column,),
                    params={
                        "ref_table": ref.target_table,
                        "ref_column": ref.target_column,
                        "separator": ref.separator,
                        **_composite_and_external(ref),
                    },
                )
            )
    return specs


def _composite_and_external(ref: LogicalReference) -> dict[str, Any]:
    """Only what a reference declares beyond one column, so plain references keep their parameters."""
    extra: dict[str, Any] = {}
    if len(ref.target_columns) > 1:
        extra.update(ref_columns=list(ref.target_columns), join=ref.join)
    if ref.external is not None:
        extra["external"] = ref.external.model_dump(mode="json", by_alias=True)
    return extra


def load_suite_files(directory: Path) -> list[ExpectationSpec]:
    """Read every ``*.yaml`` suite file of ``directory`` (sorted by name); a missing folder gives no specs.

    Raises ConfigurationError naming the file, the entry and the fix on any malformed entry.
    """
    if not directory.is_dir():
        return []
    specs: list[ExpectationSpec] = []
    for path in sorted(directory.glob("*.yaml")):
        specs.extend(parse_suite(path.read_text(encoding="utf-8"), source=path.name))
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigurationError(
            f"suites in {directory.name}: expectation name(s) used twice: {twice}. Rename them."
        )
    return specs


def parse_suite(text: str, *, source: str) -> list[ExpectationSpec]:
    """Parse one suite file: ``{table: NAME, expectations: [{name, type, ...}]}``."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"suite {source}: not valid YAML: {exc}. Fix the syntax.") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("table"), str):
        raise ConfigurationError(f"suite {source}: expected a mapping with 'table' and 'expectations'.")
    extra = sorted(set(doc) - {"table", "expectations", "description"})
    if extra:
        raise ConfigurationError(f"suite {source}: unknown key(s) {', '.join(extra)}. Remove them.")
    entries = doc.get("expectations")
    entries = [] if entries is None else entries
    if not isinstance(entries, list):
        raise ConfigurationError(f"suite {source}: 'expectations' must be a list.")
    return [
        _parse_entry(entry, table=doc["table"], source=source, index=i) for i, entry in enumerate(entries)
    ]


def _parse_entry(entry: Any, *, table: str, source: str, index: int) -> ExpectationSpec:
    where = f"suite {source}: expectations[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
        raise ConfigurationError(f"{where}: each expectation needs a 'name' and a 'type'.")
    where = f"suite {source}: expectation {entry['name']!r}"
    kind = entry.get("type")
    if kind not in HAND_KINDS:
        raise ConfigurationError(
            f"{where}: unknown type {kind!r}. Use one of: {', '.join(sorted(HAND_KINDS))}."
        )
    required, optional = HAND_KINDS[kind]
    given = set(entry) - _ENTRY_KEYS
    missing = sorted(required - given)
    if missing:
        raise ConfigurationError(f"{where}: type {kind} needs {', '.join(missing)}.")
    unknown = sorted(given - required - optional)
    if unknown:
        raise ConfigurationError(f"{where}: type {kind} does not take {', '.join(unknown)}.")
    params = {k: entry[k] for k in given}
    columns = _entry_columns(kind, params, where=where)
    _check_params(kind, params, where=where)
    return ExpectationSpec(
        name=entry["name"].strip(),
        table=table,
        kind=kind,
        suite=source,
        columns=columns,
        params={k: v for k, v in params.items() if k not in {"column", "columns", "column_a", "column_b"}},
        description=str(entry.get("description") or ""),
    )


def _entry_columns(kind: str, params: dict[str, Any], *, where: str) -> tuple[str, ...]:
    if kind == "unique":
        cols = params["columns"]
        if isinstance(cols, str):
            cols = [cols]
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
            raise ConfigurationError(f"{where}: 'columns' must be a non-empty list of column names.")
        return tuple(cols)
    if kind == "a_greater_than_b":
        return (str(params["column_a"]), str(params["column_b"]))
    if kind == "unexpected_rows":
        return ()
    return (str(params["column"]),)


def _check_params(kind: str, params: dict[str, Any], *, where: str) -> None:
    if kind == "in_set" and (not isinstance(params["value_set"], list) or not params["value_set"]):
        raise ConfigurationError(f"{where}: 'value_set' must be a non-empty list.")
    if kind == "between":
        if params.get("min") is None and params.get("max") is None:
            raise ConfigurationError(f"{where}: type between needs min, max or both.")
        for bound in ("min", "max"):
            value = params.get(bound)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ConfigurationError(f"{where}: '{bound}' must be a number, not {value!r}.")
    if kind in {"match_regex", "unexpected_rows"}:
        key = "regex" if kind == "match_regex" else "where"
        if not isinstance(params[key], str) or not params[key].strip():
            raise ConfigurationError(f"{where}: '{key}' must be a non-empty string.")


def check_specs(specs: list[ExpectationSpec], *, catalog: CatalogConfig, facts: SchemaFacts) -> None:
    """Refuse, before anything runs, a spec naming a table outside the catalog or a column that does not exist.

    Raises ConfigurationError naming the suite, the expectation, the table and the column.
    """
    managed = {t.name for t in catalog.tables}
    problems: list[str] = []
    for spec in specs:
        where = f"suite {spec.suite}: expectation {spec.name!r}"
        if spec.table not in managed or not facts.has_table(spec.table):
            problems.append(
                f"{where}: table {spec.table!r} is not a managed table of this database. "
                "Fix the suite's 'table' or add the table to catalog.tables."
            )
            continue
        wanted = [(spec.table, c) for c in spec.columns]
        if spec.kind == "foreign_key":
            wanted += [(spec.params["ref_table"], c) for c in spec.params["ref_columns"]]
        if spec.kind == "logical_reference":
            ref_table = spec.params["ref_table"]
            if ref_table not in managed or not facts.has_table(ref_table):
                problems.append(
                    f"{where}: referenced table {ref_table!r} is not a managed table of this database."
                )
                continue
            wanted += [(ref_table, c) for c in spec.params.get("ref_columns", [spec.params["ref_column"]])]
        for table, column in wanted:
            if column not in facts.columns.get(table, ()):
                problems.append(
                    f"{where}: column {column!r} does not exist in table {table!r} "
                    f"(it has {', '.join(facts.columns.get(table, ()))}). Fix the suite or the schema."
                )
    if problems:
        raise ConfigurationError("\n".join(problems))
