"""SQL for the portable form of a row: natural key and values with foreign keys as referenced natural keys."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from gardien.catalog import BoundTable, Catalog
from gardien.config import ScopeCondition

# A natural key or a foreign-key value in portable form: a tuple of text, None or nested key tuples.
Key = tuple[Any, ...]

# Text output of every type depends on these settings; both sides of a diff, the fingerprint and apply
# must render values identically, so every Gardien transaction sets them first.
SESSION_SETTINGS = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "iso_8601"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    # money is rendered and parsed by the locale's currency format; xml parsed as content or document
    ("lc_monetary", "C"),
    ("xmloption", "content"),
)


def set_session(cur: Any) -> None:
    """Pin the output settings that the portable text form depends on (for this transaction only)."""
    for name, value in SESSION_SETTINGS:
        cur.execute("SELECT set_config(%s, %s, true)", (name, value))


def freeze(value: Any) -> Any:
    """JSON lists → tuples, recursively, so keys are hashable and compare equal across sources."""
    if isinstance(value, _SEQUENCES):
        return tuple([freeze(v) if isinstance(v, _SEQUENCES) else v for v in value])
    return value


_SEQUENCES = (list, tuple)  # a tuple of types: isinstance is faster with it than with a union


# One encoder for every call: json.dumps with options builds a new encoder each time, which dominated
# the cost of rendering the keys of a 16k-change apply.
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


_STRING = json.encoder.encode_basestring  # what _ENCODE uses for strings (ensure_ascii=False)


def key_text(key: Key, memo: dict[Key, str] | None = None) -> str:
    """Canonical JSON text of a key (used for sorting, temp tables and messages).

    Keys are tuples of text, None and nested keys: rendered here directly, exactly as ``_ENCODE`` would
    (5x cheaper per call; one apply renders each of thousands of keys several times). Anything else
    goes through the encoder itself. With ``memo``, keys of that shape (and the nested keys inside) are
    remembered there and rendered once (equal keys of that shape have equal texts; others are not kept).
    """
    text = _render_key(key, memo)
    return _ENCODE(key) if text is None else text


def _render_key(key: Any, memo: dict[Key, str] | None) -> str | None:
    """``key_text`` of a tuple of text, None and such tuples; None for anything else."""
    if type(key) is not tuple:
        return None
    parts = []
    for part in key:
        kind = type(part)
        if kind is str:
            parts.append(_STRING(part))
        elif part is None:
            parts.append("null")
        elif kind is tuple:
            text = memo.get(part) if memo is not None else None
            if text is None:
                text = _render_key(part, memo)
                if text is None:
                    return None
            parts.append(text)
        else:
            return None
    text = "[" + ",".join(parts) + "]"
    if memo is not None:
        memo[key] = text
    return text


def values_text(values: dict[str, Any]) -> str:
    """Canonical JSON text of a dict of portable values (text, None or keys), as ``_ENCODE`` renders it."""
    parts = []
    for column, value in values.items():
        kind = type(value)
        if kind is str:
            parts.append(_STRING(column) + ":" + _STRING(value))
        elif value is None:
            parts.append(_STRING(column) + ":null")
        elif kind is tuple:
            parts.append(_STRING(column) + ":" + key_text(value))
        else:
            return _ENCODE(values)
    return "{" + ",".join(parts) + "}"


def qualified(table: BoundTable) -> sql.Composable:
    return sql.Identifier(table.schema, table.relname or table.name)


def referenced_join(ref: BoundTable, alias: str, column: sql.Composable) -> sql.Composed:
    """The referenced row of a foreign-key ``column`` as ``alias`` (LEFT JOIN: a NULL or dangling id
    gives NULLs)."""
    return sql.SQL("LEFT JOIN {} AS {} ON {}.{} = {}").format(
        qualified(ref), sql.Identifier(alias), sql.Identifier(alias), sql.Identifier(ref.pk), column
    )


@dataclass(frozen=True, slots=True)
class RowSql:
    """The expressions and joins that turn ``table`` rows aliased ``t0`` into portable form."""

    table: BoundTable
    key: sql.Composable  # json array: the natural key
    values: sql.Composable  # json array: table.value_columns in order
    joins: sql.Composable

    @classmethod
    def build(cls, catalog: Catalog, table: BoundTable) -> RowSql:
        counter = itertools.count(1)
        joins: list[sql.Composable] = []

        def component(tbl: BoundTable, alias: str, column: str) -> sql.Composable:
            col = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(column))
            fk = tbl.fks.get(column)
            if fk is None:
                return sql.SQL("{}::text").format(col)
            ref = catalog.table(fk.table)
            ref_alias = f"r{next(counter)}"
            joins.append(referenced_join(ref, ref_alias, col))
            return sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE {} END").format(col, key_of(ref, ref_alias))

        def key_of(tbl: BoundTable, alias: str) -> sql.Composable:
            parts = [component(tbl, alias, c) for c in tbl.natural_key]
            return sql.SQL("json_build_array({})").format(sql.SQL(", ").join(parts))

        key = key_of(table, "t0")
        values = sql.SQL("json_build_array({})").format(
            sql.SQL(", ").join(component(table, "t0", c) for c in table.value_columns)
        )
        return cls(table=table, key=key, values=values, joins=sql.SQL(" ").join(joins))

    def from_clause(self) -> sql.Composed:
        return sql.SQL("{} AS t0 {}").format(qualified(self.table), self.joins)

    def live_filter(self) -> sql.Composable:
        """Rows in the managed scope: the configured row filter, minus soft-deleted rows."""
        conds: list[sql.Composable] = [scope_filter(self.table)]
        soft = self.table.soft_delete
        if soft is not None:
            conds.append(
                sql.SQL("{}::text IS DISTINCT FROM {}").format(
                    sql.SQL("t0.{}").format(sql.Identifier(soft.column)),
                    sql.Literal(canonical_text(soft.value)),
                )
            )
        return sql.SQL(" AND ").join(conds)


def canonical_text(value: Any) -> str | None:
    """A YAML scalar as PostgreSQL's ``::text`` renders the same value (booleans as true/false)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def scope_filter(table: BoundTable) -> sql.Composable:
    """The configured row filter of ``table`` (alias ``t0``) as SQL with literal values, never raw text."""
    scope = table.config.scope or {}
    conds: list[sql.Composable] = [sql.SQL("TRUE")]
    for column, rule in scope.items():
        col = sql.SQL("t0.{}::text").format(sql.Identifier(column))
        if rule is None:
            conds.append(sql.SQL("t0.{} IS NULL").format(sql.Identifier(column)))
        elif not isinstance(rule, ScopeCondition):
            conds.append(sql.SQL("{} = {}").format(col, sql.Literal(canonical_text(rule))))
        elif rule.in_ is not None:
            conds.append(
                sql.SQL("{} = ANY({})").format(col, sql.Literal([canonical_text(v) for v in rule.in_]))
            )
        elif rule.not_in is not None:
            vals = sql.Literal([canonical_text(v) for v in rule.not_in])
            conds.append(sql.SQL("({} IS NULL OR NOT ({} = ANY({})))").format(col, col, vals))
        elif rule.like is not None:
            conds.append(sql.SQL("{} LIKE {}").format(col, sql.Literal(rule.like)))
        else:
            conds.append(
                sql.SQL("({} IS NULL OR {} NOT LIKE {})").format(col, col, sql.Literal(rule.not_like))
            )
    return sql.SQL(" AND ").join(conds)
