"""SQL that selects the rows an expectation rejects, each named by its natural key (pushed down to PostgreSQL)."""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from gardien.config import CatalogConfig
from gardien.errors import ConfigurationError
from gardien.refvalues import joined_sql
from gardien.validation.introspect import SchemaFacts
from gardien.validation.suites import ExpectationSpec

# Stands for Great Expectations' ``{batch}`` until the query is rendered (see ``render_for_gx``).
BATCH_MARKER = "GARDIEN_GX_BATCH_SOURCE"

# GX 1.24 wraps ``{batch}`` in a subquery aliased "subselect" unless the query contains JOIN, in which case
# it leaves the alias to the author. A constant one-row CROSS JOIN keeps the alias ours (``t``) in every query.
_ANCHOR = sql.SQL(" AS t CROSS JOIN (VALUES (1)) AS gx_anchor(one)")


def _text(expr: sql.Composable) -> sql.Composed:
    # Comparisons are done on text so that char(n), integer or text columns compare the same way.
    return sql.SQL("CAST({} AS text)").format(expr)


def col(alias: str, column: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(column))


def key_label(column: str) -> str:
    """``medicament_id`` is shown as ``medicament``: the column names the referenced row."""
    return column[:-3] if column.endswith("_id") and len(column) > 3 else column


class KeySql:
    """Select-list and joins that name a row of ``table`` (alias ``t``) by its natural key.

    A natural-key column that is a foreign key to a managed table with a plain one-column natural key is
    shown as that row's key (ligne_protocole → protocole code + rang), so examples read the same in every
    environment.
    """

    def __init__(self, *, catalog: CatalogConfig, facts: SchemaFacts, table: str) -> None:
        self.labels: list[str] = []
        selects: list[sql.Composable] = []
        joins: list[sql.Composable] = []
        nk = catalog.table(table).natural_key
        for i, column in enumerate(nk):
            fk = facts.single_fk(table, column)
            parent_nk = _plain_key(catalog, facts, fk.ref_table) if fk else None
            if fk is not None and parent_nk is not None:
                alias = f"nk{i}"
                label = key_label(column)
                joins.append(
                    sql.SQL(" LEFT JOIN {} AS {} ON {} = {}").format(
                        facts.ident(fk.ref_table),
                        sql.Identifier(alias),
                        col(alias, fk.ref_columns[0]),
                        col("t", column),
                    )
                )
                selects.append(sql.SQL("{} AS {}").format(col(alias, parent_nk), sql.Identifier(label)))
            else:
                label = column
                selects.append(sql.SQL("{} AS {}").format(col("t", column), sql.Identifier(label)))
            self.labels.append(label)
        self.select = sql.SQL(", ").join(selects)
        self.joins = sql.Composed(joins)


def _plain_key(catalog: CatalogConfig, facts: SchemaFacts, table: str) -> str | None:
    try:
        nk = catalog.table(table).natural_key
    except ConfigurationError:  # the referenced table is not managed: show the raw id
        return None
    if len(nk) == 1 and facts.single_fk(table, nk[0]) is None:
        return nk[0]
    return None


def rows_query(
    *,
    keys: KeySql,
    source: sql.Composable,
    extra: list[sql.Composable] | None = None,
    joins: sql.Composable | None = None,
    where: sql.Composable,
) -> sql.Composed:
    """``SELECT <natural key>, <extra> FROM <source> AS t ... WHERE <where>``."""
    select = keys.select if not extra else sql.SQL(", ").join([keys.select, *extra])
    return sql.SQL("SELECT {} FROM {}{}{}{} WHERE {}").format(
        select, source, _ANCHOR, keys.joins, joins or sql.SQL(""), where
    )


def _value(column: str, keys: KeySql) -> list[sql.Composable]:
    if column in keys.labels:
        return []
    return [sql.SQL("{} AS {}").format(col("t", column), sql.Identifier(column))]


def failing_rows_sql(
    spec: ExpectationSpec, *, catalog: CatalogConfig, facts: SchemaFacts, source: sql.Composable
) -> sql.Composed:
    """The rows of ``spec.table`` (read from ``source``) that ``spec`` rejects, named by natural key.

    ``source`` is the qualified table for direct execution, or ``sql.SQL(BATCH_MARKER)`` for GX.
    """
    keys = KeySql(catalog=catalog, facts=facts, table=spec.table)
    table = facts.ident(spec.table)
    p = spec.params
    if spec.kind == "not_null":
        return rows_query(keys=keys, source=source, where=sql.SQL("{} IS NULL").format(col("t", spec.column)))
    if spec.kind == "unique":
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
        tcols = sql.SQL(", ").join(col("t", c) for c in spec.columns)
        where = sql.SQL("({}) IN (SELECT {} FROM {} GROUP BY {} HAVING count(*) > 1)").format(
            tcols, cols, table, cols
        )
        extra = [
            sql.SQL("{} AS {}").format(col("t", c), sql.Identifier(c))
            for c in spec.columns
            if c not in keys.labels
        ]
        return rows_query(keys=keys, source=source, extra=extra, where=where)
    if spec.kind == "in_set":
        values = [str(v) for v in p["value_set"]]
        where = sql.SQL("{} IS NOT NULL AND {} <> ALL({}::text[])").format(
            col("t", spec.column), _text(col("t", spec.column)), sql.Literal(values)
        )
        return rows_query(keys=keys, source=source, extra=_value(spec.column, keys), where=where)
    if spec.kind == "between":
        parts = []
        if p.get("min") is not None:
            op = "<=" if p.get("strict_min") else "<"
            parts.append(sql.SQL("{} " + op + " {}").format(col("t", spec.column), sql.Literal(p["min"])))
        if p.get("max") is not None:
            op = ">=" if p.get("strict_max") else ">"
            parts.append(sql.SQL("{} " + op + " {}").format(col("t", spec.column), sql.Literal(p["max"])))
        return rows_query(
            keys=keys,
            source=source,
            extra=_value(spec.column, keys),
            where=sql.SQL("({})").format(sql.SQL(" OR ").join(parts)),
        )
    if spec.kind == "match_regex":
        where = sql.SQL("{} IS NOT NULL AND {} !~ {}").format(
            col("t", spec.column), _text(col("t", spec.column)), sql.Literal(p["regex"])
        )
        return rows_query(keys=keys, source=source, extra=_value(spec.column, keys), where=where)
    if spec.kind == "a_greater_than_b":
        a, b = spec.columns
        op = ">=" if p.get("or_equal") else ">"
        where = sql.SQL("{a} IS NOT NULL AND {b} IS NOT NULL AND NOT ({a} " + op + " {b})").format(
            a=col("t", a), b=col("t", b)
        )
        return rows_query(keys=keys, source=source, extra=_value(a, keys) + _value(b, keys), where=where)
    if spec.kind == "unexpected_rows":
        # The predicate comes from a reviewed suite file under include/: trusted like code, never user input.
        return rows_query(keys=keys, source=source, where=sql.SQL("({})").format(sql.SQL(p["where"])))
    if spec.kind == "foreign_key":
        return _foreign_key(spec, keys=keys, facts=facts, source=source)
    if spec.kind == "logical_reference":
        return _logical_reference(spec, keys=keys, facts=facts, source=source)
    raise ValueError(f"no SQL for expectation kind {spec.kind!r}")


def _foreign_key(
    spec: ExpectationSpec, *, keys: KeySql, facts: SchemaFacts, source: sql.Composable
) -> sql.Composed:
    ref_cols: list[str] = spec.params["ref_columns"]
    on = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(col("r", rc), col("t", c))
        for c, rc in zip(spec.columns, ref_cols, strict=True)
    )
    # MATCH SIMPLE, as PostgreSQL enforces it: a row with any NULL in the key references nothing.
    present = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(col("t", c)) for c in spec.columns)
    joins = sql.SQL(" LEFT JOIN {} AS r ON {}").format(facts.ident(spec.params["ref_table"]), on)
    where = sql.SQL("{} AND {} IS NULL").format(present, col("r", ref_cols[0]))
    extra = [
        sql.SQL("{} AS {}").format(col("t", c), sql.Identifier(c))
        for c in spec.columns
        if c not in keys.labels
    ]
    return rows_query(keys=keys, source=source, extra=extra, joins=joins, where=where)


def _logical_reference(
    spec: ExpectationSpec, *, keys: KeySql, facts: SchemaFacts, source: sql.Composable
) -> sql.Composed:
    ref = facts.ident(spec.params["ref_table"])
    columns = spec.params.get("ref_columns", [spec.params["ref_column"]])
    ref_col = joined_sql([_text(col("r", c)) for c in columns], spec.params.get("join"))
    value, joins = reference_values(spec.column, spec.params.get("separator"))
    # Exact match: a value differing only by case or surrounding spaces does not resolve; the nearest
    # such value is shown beside it so the fix is obvious.
    missing = sql.SQL("NOT EXISTS (SELECT 1 FROM {} AS r WHERE {} = {})").format(ref, ref_col, value)
    external = spec.params.get("external")
    if external:
        missing = sql.SQL("{} AND NOT {}").format(missing, external_sql(external, value))
    near = sql.SQL(
        "(SELECT min({}) FROM {} AS r WHERE lower(btrim({})) = lower(btrim({}))) AS near_miss"
    ).format(ref_col, ref, ref_col, value)
    extra = [sql.SQL("{} AS {}").format(value, sql.Identifier(spec.column)), near]
    where = sql.SQL("{} IS NOT NULL AND {} <> '' AND {}").format(value, value, missing)
    return rows_query(keys=keys, source=source, extra=extra, joins=joins, where=where)


def external_sql(external: dict[str, Any], value: sql.Composable) -> sql.Composed:
    """``value`` is allowed outside the managed scope: in the allow-list, matching the pattern, or present in
    the unmanaged table (of the validated database)."""
    ors: list[sql.Composable] = [
        sql.SQL("{} = ANY({}::text[])").format(value, sql.Literal(external["values"]))
    ]
    if external.get("pattern") is not None:
        ors.append(sql.SQL("{} ~ {}").format(value, sql.Literal("^(?:" + external["pattern"] + ")$")))
    table = external.get("table")
    if table:
        ors.append(
            sql.SQL("EXISTS (SELECT 1 FROM {} AS x WHERE x.{}::text = {})").format(
                sql.Identifier(table["schema"], table["name"]), sql.Identifier(table["column"]), value
            )
        )
    return sql.SQL("({})").format(sql.SQL(" OR ").join(ors))


def reference_values(column: str, separator: str | None) -> tuple[sql.Composable, sql.Composable]:
    """The referenced value(s) of ``t.column``: the column itself, or one row per element of a list."""
    if separator:
        joins = sql.SQL(" CROSS JOIN LATERAL string_to_table({}, {}) AS e(value)").format(
            _text(col("t", column)), sql.Literal(separator)
        )
        return sql.SQL("e.value"), joins
    return _text(col("t", column)), sql.SQL("")


def render_for_gx(query: sql.Composed, conn: Any) -> str:
    """Render ``query`` (built with BATCH_MARKER as source) as GX's ``unexpected_rows_query`` text."""
    text = query.as_string(conn)
    # GX runs str.format on the query: literal braces (regexes, values) must be doubled.
    return text.replace("{", "{{").replace("}", "}}").replace(BATCH_MARKER, "{batch}")
