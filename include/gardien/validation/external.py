"""Notes on references that resolve only by a declared allow-list or pattern: allowed, yet found in no
table, so approvers see them named before they approve."""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from gardien.config import CatalogConfig
from gardien.refvalues import joined_sql
from gardien.validation.introspect import SchemaFacts
from gardien.validation.sqlbuild import col, reference_values

_SHOWN = 10


def allow_list_notes(conn: Any, *, catalog: CatalogConfig, facts: SchemaFacts) -> list[str]:
    """One note per logical reference whose values resolve only by ``external.values`` or ``pattern``."""
    notes: list[str] = []
    for table in catalog.tables:
        for ref in table.logical_references:
            ext = ref.external
            if ext is None or (not ext.values and ext.pattern is None):
                continue
            value, joins = reference_values(ref.column, ref.separator)
            target = joined_sql(
                [sql.SQL("{}::text").format(col("r", c)) for c in ref.target_columns], ref.join
            )
            conds = [
                sql.SQL("NOT EXISTS (SELECT 1 FROM {} AS r WHERE {} = {})").format(
                    facts.ident(ref.target_table), target, value
                )
            ]
            if ext.table is not None:
                conds.append(
                    sql.SQL("NOT EXISTS (SELECT 1 FROM {} AS x WHERE x.{}::text = {})").format(
                        sql.Identifier(ext.table.schema_, ext.table.name),
                        sql.Identifier(ext.table.column),
                        value,
                    )
                )
            query = sql.SQL(
                "SELECT DISTINCT {v} FROM {t} AS t{j} WHERE {v} IS NOT NULL AND {v} <> '' AND {c} ORDER BY 1"
            ).format(v=value, t=facts.ident(table.name), j=joins, c=sql.SQL(" AND ").join(conds))
            with conn.cursor() as cur:
                cur.execute(query)
                found = [row[0] for row in cur.fetchall()]
            only = [v for v in found if ext.allows(v)]
            if only:
                shown = ", ".join(repr(v) for v in only[:_SHOWN]) + (" ..." if len(only) > _SHOWN else "")
                how = sorted({ext.allows(v) or "" for v in only})
                notes.append(
                    f"{table.name}.{ref.column}: {len(only)} value(s) found in no table, allowed only by the "
                    f"{' and '.join(how)} of the reference to {ref.label}: {shown}. Check that the application "
                    "defines them."
                )
    return notes
