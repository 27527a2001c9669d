"""The changeset engine seen from validation: a ChangeSummary of a Changeset, and apply as a rehearsal hook."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from gardien.changeset import Changeset
from gardien.config import CatalogConfig
from gardien.validation.changes import ChangeSummary, TableChanges


def summary_from_changeset(changeset: Changeset, *, catalog: CatalogConfig) -> ChangeSummary:
    """Counts per table and the deleted rows' natural keys as ``{column: value}`` in catalog key order."""
    tables: dict[str, TableChanges] = {}
    for changes in changeset.tables:
        if not changes.count:
            continue
        nk = catalog.table(changes.table).natural_key
        tables[changes.table] = TableChanges(
            inserts=len(changes.inserts),
            updates=len(changes.updates),
            deletes=len(changes.deletes),
            deleted_keys=tuple(dict(zip(nk, d.key, strict=True)) for d in changes.deletes),
        )
    return ChangeSummary(tables=tables)


def engine_apply(
    changeset: Changeset, *, catalog: CatalogConfig, applied_at: datetime, requested_by: str | None = None
) -> Callable[[str], Any]:
    """``apply_fn`` for ``rehearse``: the engine's own apply, in one transaction on the scratch database."""
    from gardien.apply import deploy

    def apply_fn(scratch_dsn: str) -> Any:
        return deploy(
            scratch_dsn,
            changeset,
            catalog_config=catalog,
            target="rehearsal",
            applied_at=applied_at,
            requested_by=requested_by,
        )

    return apply_fn
