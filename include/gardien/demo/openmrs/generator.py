"""Build the OpenMRS-shaped example's qualif and prod databases: same content, different surrogate ids,
pending changes in qualif. Scale 1: 3,000 concepts, 6,000 names, 300 locations, 100 roles, 3,100 grants."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from gardien import pg

HERE = Path(__file__).resolve().parent
SCHEMA = (HERE / "schema.sql").read_text(encoding="utf-8")
SEED = (HERE / "seed.sql").read_text(encoding="utf-8")
CHANGES = (HERE / "changes.sql").read_text(encoding="utf-8")  # the first promotion's pending changes
SECOND = (HERE / "second.sql").read_text(encoding="utf-8")  # a later promotion's changes
CONFIG = HERE.parents[2] / "config" / "openmrs.yaml"

# qualif inserts in natural order from id 1; prod from id 100000 in another order: every id differs
_ORDER = {"qualif": ("i", 1), "prod": ("md5(i::text)", 100_000)}


@dataclass(frozen=True, slots=True)
class Built:
    qualif: str
    prod: str


def execute(dsn: str, text: str) -> None:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(text)
    finally:
        conn.close()


def fill(dsn: str, *, env: str, scale: int = 1, pending: bool = True) -> None:
    """Create the schema in ``dsn`` (an empty database) and fill it as environment ``env`` (qualif or prod);
    qualif also gets the pending changes unless ``pending`` is false."""
    order, start = _ORDER[env]
    execute(dsn, SCHEMA.replace("{id_start}", str(start)))
    execute(dsn, SEED.replace("{order}", order).replace("{scale}", str(int(scale))).replace("{env}", env))
    if env == "qualif" and pending:
        execute(dsn, CHANGES)


def build(
    admin_dsn: str,
    *,
    prefix: str = "gardien_openmrs_",
    scale: int = 1,
    progress: Callable[[str], None] = print,
) -> Built:
    """(Re)create ``PREFIXqualif`` and ``PREFIXprod`` on the server of ``admin_dsn``."""
    dsns = {}
    for env in ("qualif", "prod"):
        name = f"{prefix}{env}"
        dsns[env] = pg.create_database(admin_dsn, name, replace=True)
        fill(dsns[env], env=env, scale=scale)
        progress(f"  {name}: built (OpenMRS-shaped, scale {scale})")
    return Built(qualif=dsns["qualif"], prod=dsns["prod"])
