"""Audit columns (creator, date_created...): kept out of the diff (``ignore``), filled on insert (``on_insert``)."""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from gardien.catalog import BoundTable, Catalog
from gardien.changeset import Changeset
from gardien.errors import DeploymentError

# Transaction-local setting holding the release's requester while an apply writes (set by set_requester).
REQUESTER_SETTING = "gardien.requested_by"


def on_insert_values(table: BoundTable) -> dict[str, sql.Composable]:
    """Column -> SQL expression, cast to the column's type, for ``table``'s ``on_insert`` columns."""
    out: dict[str, sql.Composable] = {}
    for column, rule in table.config.on_insert.items():
        if rule == "now":
            value: sql.Composable = sql.SQL("now()")
        elif rule == "requester":
            value = sql.SQL("current_setting({}, true)").format(sql.Literal(REQUESTER_SETTING))
        else:
            value = sql.Literal(None if rule.value is None else str(rule.value))
        # the write type (gardien.coltypes: no typmod, so the assignment refuses an over-long literal rather
        # than an explicit cast truncating it); format_type text read from pg_catalog, never from input
        write_type = table.write_types.get(column) or table.types[column]
        out[column] = sql.SQL("CAST({} AS {})").format(value, sql.SQL(write_type))
    return out


def set_requester(cur: Any, *, catalog: Catalog, changeset: Changeset, requested_by: str | None) -> None:
    """Make the release's requester available to ``on_insert: requester`` for this transaction.

    Raises DeploymentError, before anything is written, when a table inserting rows fills a column with
    the requester and none was given.
    """
    if requested_by is not None:
        cur.execute("SELECT set_config(%s, %s, true)", (REQUESTER_SETTING, requested_by))
        return
    needing = [
        tc.table
        for tc in changeset.tables
        if tc.inserts and "requester" in catalog.table(tc.table).config.on_insert.values()
    ]
    if needing:
        raise DeploymentError(
            f"table(s) {', '.join(needing)} fill a column with the release's requester on insert "
            "(on_insert: requester), but this apply has none: deploy through the release DAG or pass "
            "--requested-by. Nothing was changed."
        )
