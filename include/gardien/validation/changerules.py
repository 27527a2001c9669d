"""Changeset rules: blast radius, no deletion of a still-referenced row, no change to a frozen table."""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from gardien.config import CatalogConfig
from gardien.validation.changes import ChangeSummary
from gardien.validation.introspect import SchemaFacts
from gardien.validation.settings import BlastRadius
from gardien.validation.sqlbuild import KeySql, col, reference_values, rows_query
from gardien.validation.suites import ExpectationSpec

CHANGESET = "changeset"
_ANCHOR = sql.SQL(" AS t CROSS JOIN (VALUES (1)) AS gx_anchor(one)")


def changeset_specs(
    summary: ChangeSummary, *, catalog: CatalogConfig, facts: SchemaFacts, blast: BlastRadius
) -> tuple[list[ExpectationSpec], list[str]]:
    """Specs for the changeset rules, and notes on rules that could not be built (and why)."""
    specs: list[ExpectationSpec] = []
    notes: list[str] = []
    for table in catalog.tables:
        changes = summary.for_table(table.name)
        if table.frozen:
            specs.append(
                ExpectationSpec(
                    name=f"{table.name} is frozen: the changeset must not change it",
                    table=table.name,
                    kind="frozen_table",
                    suite=CHANGESET,
                    params={
                        "inserts": changes.inserts,
                        "updates": changes.updates,
                        "deletes": changes.deletes,
                    },
                )
            )
        if changes.updates + changes.deletes > 0 and blast.is_accepted(table.name):
            notes.append(
                f"{table.name}: blast radius not checked ({changes.updates + changes.deletes} row(s) updated or "
                f"deleted): accepted for this release by {blast.accepted_by or 'unknown'}: {blast.accepted_reason}"
            )
        elif changes.updates + changes.deletes > 0:
            limit = blast.limit_for(table.name)
            specs.append(
                ExpectationSpec(
                    name=f"{table.name}: blast radius (updated + deleted rows) within {limit:.0%}",
                    table=table.name,
                    kind="blast_radius",
                    suite=CHANGESET,
                    params={
                        "changed": changes.updates + changes.deletes,
                        "inserts": changes.inserts,
                        "hard_deletes": 0 if table.soft_delete else changes.deletes,
                        "limit": limit,
                        "min_changes": blast.min_changes,
                    },
                )
            )
        if changes.deletes:
            specs.extend(
                _deletion_specs(table.name, changes.deleted_keys, catalog=catalog, facts=facts, notes=notes)
            )
    unknown = sorted(set(summary.tables) - {t.name for t in catalog.tables})
    if unknown:
        notes.append(f"change summary names table(s) outside the catalog, ignored: {', '.join(unknown)}")
    return specs, notes


def _deletion_specs(
    table: str,
    deleted: tuple[dict[str, Any], ...],
    *,
    catalog: CatalogConfig,
    facts: SchemaFacts,
    notes: list[str],
) -> list[ExpectationSpec]:
    nk = list(catalog.table(table).natural_key)
    if not deleted:
        notes.append(
            f"{table}: deletions without their natural keys; the still-referenced rule was not checked"
        )
        return []
    if any(set(k) != set(nk) or any(isinstance(v, list | dict) for v in k.values()) for k in deleted):
        notes.append(
            f"{table}: deleted keys are not plain {nk} values; the still-referenced rule was not checked"
        )
        return []
    keys = [[None if k[c] is None else str(k[c]) for c in nk] for k in deleted]
    specs = []
    for fk in facts.fks_to(table):
        specs.append(
            ExpectationSpec(
                name=f"{table} rows deleted by the changeset are not referenced by {fk.table}.{','.join(fk.columns)}",
                table=fk.table,
                kind="referenced_deletion",
                suite=CHANGESET,
                columns=fk.columns,
                params={
                    "via": "fk",
                    "parent": table,
                    "ref_columns": list(fk.ref_columns),
                    "nk": nk,
                    "keys": keys,
                },
            )
        )
    for other in catalog.tables:
        for ref in other.logical_references:
            if ref.target_table != table:
                continue
            specs.append(
                ExpectationSpec(
                    name=f"{table} rows deleted by the changeset are not referenced by {other.name}.{ref.column}",
                    table=other.name,
                    kind="referenced_deletion",
                    suite=CHANGESET,
                    columns=(ref.column,),
                    params={
                        "via": "logical",
                        "parent": table,
                        "ref_column": ref.target_column,
                        "separator": ref.separator,
                        "nk": nk,
                        "keys": keys,
                    },
                )
            )
    return specs


def changeset_rule_sql(
    spec: ExpectationSpec, *, catalog: CatalogConfig, facts: SchemaFacts, source: sql.Composable
) -> sql.Composed:
    """The offending rows (or figures) of a changeset rule; no row means the rule holds."""
    p = spec.params
    if spec.kind == "frozen_table":
        return sql.SQL(
            "SELECT x.inserts, x.updates, x.deletes FROM (VALUES ({}, {}, {})) AS x(inserts, updates, deletes) "
            "WHERE x.inserts + x.updates + x.deletes > 0 AND NOT EXISTS (SELECT 1 FROM {}{} WHERE false)"
        ).format(
            sql.Literal(p["inserts"]), sql.Literal(p["updates"]), sql.Literal(p["deletes"]), source, _ANCHOR
        )
    if spec.kind == "blast_radius":
        # Rows before the release = rows after - inserted + hard-deleted (soft deletes keep their row).
        return sql.SQL(
            "SELECT c.rows_before, c.changed, round(c.changed::numeric / GREATEST(c.rows_before, 1), 4) AS share, "
            "{limit}::numeric AS max_share FROM (SELECT count(*) - {ins} + {hard} AS rows_before, {changed} AS changed "
            "FROM {source}{anchor}) AS c WHERE c.changed > {min_changes} AND c.changed > {limit} * c.rows_before"
        ).format(
            limit=sql.Literal(p["limit"]),
            ins=sql.Literal(p["inserts"]),
            hard=sql.Literal(p["hard_deletes"]),
            changed=sql.Literal(p["changed"]),
            source=source,
            anchor=_ANCHOR,
            min_changes=sql.Literal(p["min_changes"]),
        )
    if spec.kind == "referenced_deletion":
        return _referenced_deletion(spec, catalog=catalog, facts=facts, source=source)
    raise ValueError(f"no SQL for changeset rule kind {spec.kind!r}")


def _in_keys(exprs: list[sql.Composable], keys: list[list[str | None]]) -> sql.Composed:
    rows = sql.SQL(", ").join(
        sql.SQL("({})").format(sql.SQL(", ").join(sql.Literal(v) for v in key)) for key in keys
    )
    casted = sql.SQL(", ").join(sql.SQL("CAST({} AS text)").format(e) for e in exprs)
    return sql.SQL("({}) IN (VALUES {})").format(casted, rows)


def _referenced_deletion(
    spec: ExpectationSpec, *, catalog: CatalogConfig, facts: SchemaFacts, source: sql.Composable
) -> sql.Composed:
    p = spec.params
    keys = KeySql(catalog=catalog, facts=facts, table=spec.table)
    parent = facts.ident(p["parent"])
    parent_key = [col("p", c) for c in p["nk"]]
    shown = [
        sql.SQL("{} AS {}").format(e, sql.Identifier(f"deleted_{p['parent']}_{c}"))
        for e, c in zip(parent_key, p["nk"], strict=True)
    ]
    if p["via"] == "fk":
        on = sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(col("p", rc), col("t", c))
            for c, rc in zip(spec.columns, p["ref_columns"], strict=True)
        )
        joins = sql.SQL(" JOIN {} AS p ON {}").format(parent, on)
        return rows_query(
            keys=keys, source=source, extra=shown, joins=joins, where=_in_keys(parent_key, p["keys"])
        )
    value, split = reference_values(spec.column, p.get("separator"))
    if p["nk"] == [p["ref_column"]]:
        # The reference names the natural key itself: compare with the deleted keys, so a hard-deleted row
        # (gone from the post-state) is caught as well as a soft-deleted one.
        extra = [
            sql.SQL("{} AS {}").format(value, sql.Identifier(f"deleted_{p['parent']}_{p['ref_column']}"))
        ]
        return rows_query(
            keys=keys, source=source, extra=extra, joins=split, where=_in_keys([value], p["keys"])
        )
    joins = sql.Composed(
        [
            split,
            sql.SQL(" JOIN {} AS p ON CAST({} AS text) = {}").format(
                parent, col("p", p["ref_column"]), value
            ),
        ]
    )
    return rows_query(
        keys=keys, source=source, extra=shown, joins=joins, where=_in_keys(parent_key, p["keys"])
    )
