"""What Gardien can carry of each managed column's type, read from pg_catalog when the catalog is bound.

Values travel as their type's text output and are written back through its input function (under the
output settings gardien.portable pins). That is faithful for every type whose text form is the value
itself — json and jsonb, arrays, composites, ranges, enums, domains, bytea, numeric and float specials,
date/time types, network types, bit strings, money, xml, extension types such as citext — and is not
for the few types below: their values identify something inside one database or server, or have no input
function, or lose part of the value in their text form. A managed column whose type is, or contains
(through a domain, an array element, a composite attribute or a range subtype), one of them is refused
when the catalog is bound, by name, rather than carried wrong.

Writes cast each value's text to the column's *write type*: the type under its domains, without typmod
(``format_type(base, -1)``: ``character varying``, ``bpchar``, ``"bit"``, ``jsonb``, ``numeric``...). The
assignment to the column then applies the typmod and the domains' constraints as an INSERT would: an
over-long varchar or bit string is refused, never truncated as an explicit cast to varchar(3) would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_OBJECT_ID = "identifies an object by its internal number, which differs in every database"
_SERVER_ID = "identifies a transaction or a row version of one server, meaningless in another"
_NO_INPUT = "has no input function: its values cannot be written"

REFUSED: dict[str, str] = {
    "oid": _OBJECT_ID,
    "regclass": _OBJECT_ID,
    "regproc": _OBJECT_ID,
    "regprocedure": _OBJECT_ID,
    "regoper": _OBJECT_ID,
    "regoperator": _OBJECT_ID,
    "regtype": _OBJECT_ID,
    "regconfig": _OBJECT_ID,
    "regdictionary": _OBJECT_ID,
    "regnamespace": _OBJECT_ID,
    "regrole": _OBJECT_ID,
    "regcollation": _OBJECT_ID,
    "aclitem": "grants privileges to roles of one server",
    "xid": _SERVER_ID,
    "xid8": _SERVER_ID,
    "cid": _SERVER_ID,
    "tid": _SERVER_ID,
    "txid_snapshot": _SERVER_ID,
    "pg_snapshot": _SERVER_ID,
    "pg_node_tree": _NO_INPUT,
    "pg_ndistinct": _NO_INPUT,
    "pg_dependencies": _NO_INPUT,
    "pg_mcv_list": _NO_INPUT,
    "pg_brin_bloom_summary": _NO_INPUT,
    "pg_brin_minmax_multi_summary": _NO_INPUT,
}
_UNBOUNDED_BPCHAR = (
    "is blank-padded without a length: its text form drops trailing blanks, so a value would not come back "
    "byte for byte; declare it character(n), varchar or text"
)

# Each managed column's type, then recursively what it is made of: a domain's base type, an array's
# element type, a composite's attribute types, a range's subtype, a multirange's range. ``top`` stays true
# along domains only (what the column's values are written as); typmods follow the way PostgreSQL
# attaches them (a domain's own, an array element's is the array's, a composite attribute's own).
_TYPES_SQL = """
WITH RECURSIVE walk (nspname, relname, attname, generated, typ, typmod, top, depth) AS (
    SELECT n.nspname, c.relname, a.attname, a.attgenerated <> '', a.atttypid, a.atttypmod, true, 0
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN unnest(%s::text[], %s::text[]) AS m(nsp, rel) ON m.nsp = n.nspname AND m.rel = c.relname
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE c.relkind IN ('r', 'p')
  UNION ALL
    SELECT w.nspname, w.relname, w.attname, w.generated, x.typ, x.typmod, w.top AND x.domain, w.depth + 1
    FROM walk w
    JOIN pg_type t ON t.oid = w.typ
    CROSS JOIN LATERAL (
        SELECT t.typbasetype, t.typtypmod, true WHERE t.typtype = 'd'
        UNION ALL SELECT t.typelem, w.typmod, false WHERE t.typcategory = 'A' AND t.typelem <> 0
        UNION ALL
        SELECT a.atttypid, a.atttypmod, false FROM pg_attribute a
        WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL SELECT r.rngsubtype, -1, false FROM pg_range r WHERE r.rngtypid = t.oid
        UNION ALL SELECT r.rngtypid, -1, false FROM pg_range r WHERE r.rngmultitypid = t.oid
    ) AS x (typ, typmod, domain)
    WHERE w.depth < 32
)
SELECT w.nspname, w.relname, w.attname, w.generated, tn.nspname = 'pg_catalog', t.typname, w.typmod,
       w.top AND t.typtype <> 'd', format_type(w.typ, NULLIF(w.typmod, -1)), format_type(w.typ, -1)
FROM walk w
JOIN pg_type t ON t.oid = w.typ
JOIN pg_namespace tn ON tn.oid = t.typnamespace
"""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A column Gardien will not carry: the type inside it that cannot be carried, and why."""

    table: str
    column: str
    type_name: str
    reason: str


@dataclass(frozen=True, slots=True)
class ColumnTypes:
    """The facts of one bind: refused columns, generated columns, each column's write type."""

    refusals: tuple[Refusal, ...]
    generated: frozenset[tuple[str, str]]  # (table, column)
    write_types: dict[str, dict[str, str]]  # table → column → write type

    def refused(self, table: str, columns: tuple[str, ...]) -> list[Refusal]:
        """The refusals among ``columns`` of ``table`` (one per column: the first type found)."""
        seen: dict[str, Refusal] = {}
        for refusal in self.refusals:
            if refusal.table == table and refusal.column in columns:
                seen.setdefault(refusal.column, refusal)
        return [seen[c] for c in columns if c in seen]


def read_column_types(cur: Any, *, managed_at: dict[tuple[str, str], str]) -> ColumnTypes:
    """The type facts of every column of the managed tables (one catalog query).

    ``managed_at`` maps each table's (schema, name in the database) to its catalog name, the name the
    facts are keyed by.
    """
    cur.execute(_TYPES_SQL, ([s for s, _ in managed_at], [r for _, r in managed_at]))
    refusals: list[Refusal] = []
    generated: set[tuple[str, str]] = set()
    write_types: dict[str, dict[str, str]] = {}
    for row in cur.fetchall():
        nsp, rel, column, is_generated, builtin, typname, typmod, base, shown, unmodified = row
        table = managed_at[(nsp, rel)]
        if is_generated:
            generated.add((table, column))
        if base:
            write_types.setdefault(table, {})[column] = unmodified
        if not builtin:
            continue
        if typname in REFUSED:
            refusals.append(Refusal(table, column, shown, REFUSED[typname]))
        elif typname == "bpchar" and typmod == -1:
            refusals.append(Refusal(table, column, shown, _UNBOUNDED_BPCHAR))
    return ColumnTypes(refusals=tuple(refusals), generated=frozenset(generated), write_types=write_types)


def describe(refusal: Refusal, *, label: str, column_type: str) -> str:
    """The configuration error for one refused column: what, why, and the two ways out."""
    inside = "" if refusal.type_name == column_type else f", which holds {refusal.type_name},"
    return (
        f"{label}: {refusal.table}.{refusal.column} has type {column_type}{inside} that Gardien cannot carry "
        f"faithfully: {refusal.type_name} {refusal.reason}. List {refusal.column} under ignore in catalog "
        f"table {refusal.table}, or change its type."
    )
