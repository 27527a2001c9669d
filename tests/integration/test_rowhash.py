"""Portable row hashes computed on the client (gardien.rowhash) on real PostgreSQL: what they must tell apart,
what they must not, and that every way of computing a fingerprint agrees."""

from __future__ import annotations

from typing import Any

import pytest
from test_engine_support import execute

from gardien import pg
from gardien.catalog import bind_catalog
from gardien.config import parse_config
from gardien.errors import ChangesetError
from gardien.fingerprint import (
    local_scope_fingerprint,
    scope_fingerprint,
    scope_fingerprints,
    touched_fingerprints,
)
from gardien.portable import set_session
from gardien.rowhash import RowHasher

# A referenced table with a uuid key (ids hashed, not sent as integers), one with sparse integer ids,
# nullable and NOT NULL foreign keys, a self-reference, a NOT VALID foreign key that lets a row dangle,
# and plain columns of several types (sent raw, hashed natively, or hashed through their text).
SCHEMA = """
CREATE TABLE famille (id uuid PRIMARY KEY, code text NOT NULL UNIQUE);
CREATE TABLE service (
    id integer PRIMARY KEY, code text NOT NULL UNIQUE, parent_id integer REFERENCES service (id)
);
CREATE TABLE article (
    id          bigint PRIMARY KEY,
    famille_id  uuid NOT NULL REFERENCES famille (id),
    rang        integer NOT NULL,
    service_id  integer REFERENCES service (id),
    prix        numeric,
    poids       double precision,
    quantite    integer,
    libelle     text NOT NULL,
    UNIQUE (famille_id, rang)
);
CREATE TABLE lien (
    id         integer PRIMARY KEY, code text NOT NULL UNIQUE, article_id bigint NOT NULL
);
"""

CATALOG = {
    "schema": "public",
    "tables": [
        {"name": "famille", "natural_key": ["code"]},
        {"name": "service", "natural_key": ["code"]},
        {"name": "article", "natural_key": ["famille_id", "rang"]},
        {"name": "lien", "natural_key": ["code"]},
    ],
}


def fill(dsn: str, *, offset: int) -> None:
    """The same content with ids shifted by ``offset`` (uuids derived from it) and rows in another order."""
    u = f"{offset:08d}"
    execute(dsn, SCHEMA)
    execute(
        dsn,
        f"INSERT INTO famille VALUES ('{u}-0000-0000-0000-000000000001', 'ANTALG'), "
        f"('{u}-0000-0000-0000-000000000002', 'ANTIBIO')",
    )
    execute(
        dsn,
        f"INSERT INTO service VALUES ({offset + 1}, 'PHARMA', NULL), ({offset + 1000000}, 'URG', {offset + 1})",
    )
    rows = [
        (1, 1, 1, 1, "1.50", "0.5", 3, "paracetamol"),
        (2, 1, 2, None, "1.5", None, None, "ibuprofene"),
        (3, 2, 1, 1000000, None, "-0", 0, "amoxicilline"),
        (4, 2, 2, 1000000, "0", "0", None, ""),
    ]
    if offset:
        rows.reverse()
    for i, fam, rang, svc, prix, poids, qte, lib in rows:
        execute(
            dsn,
            "INSERT INTO article VALUES (%s, %s::uuid, %s, %s, %s::numeric, %s::float8, %s, %s)",
            (
                offset * 10 + i,
                f"{u}-0000-0000-0000-00000000000{fam}",
                rang,
                None if svc is None else offset + svc,
                prix,
                poids,
                qte,
                lib,
            ),
        )
    # A dangling reference: inserted before its foreign key exists, which is then added NOT VALID.
    execute(
        dsn,
        f"INSERT INTO lien VALUES ({offset + 1}, 'L1', {offset * 10 + 1}), ({offset + 2}, 'L2', 99999999)",
    )
    execute(dsn, "ALTER TABLE lien ADD FOREIGN KEY (article_id) REFERENCES article (id) NOT VALID")


_NO_FK = "SET session_replication_role = replica; "


@pytest.fixture
def pair(make_db) -> tuple[str, str]:
    a, b = make_db("rh_a"), make_db("rh_b")
    fill(a, offset=0)
    fill(b, offset=7000)
    return a, b


def _with(dsn: str, work: Any) -> Any:
    conn = pg.connect(dsn)
    try:
        catalog = bind_catalog(conn, parse_config({"catalog": CATALOG}).catalog)
        with conn.cursor() as cur:
            set_session(cur)
            return work(cur, catalog)
    finally:
        conn.rollback()
        conn.close()


def fingerprint(dsn: str) -> Any:
    return _with(dsn, lambda cur, catalog: scope_fingerprint(cur, catalog))


def row_hashes(dsn: str, table: str) -> dict[int, int]:
    def work(cur: Any, catalog: Any) -> dict[int, int]:
        hashed = RowHasher(cur, catalog).rows(catalog.table(table), pk=True)
        return dict(zip(hashed.pk.tolist(), hashed.row.tolist(), strict=True))

    return _with(dsn, work)


def test_same_content_with_other_ids_and_order_has_the_same_fingerprint(pair):
    a, b = pair
    assert fingerprint(a) == fingerprint(b)
    assert all(t.rows for t in fingerprint(a).tables)


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE article SET prix = 1.500 WHERE libelle = 'paracetamol'",  # equal numeric, other scale
        "UPDATE article SET poids = 0.0 WHERE libelle = 'amoxicilline'",  # -0 and 0
        "UPDATE article SET quantite = NULL WHERE libelle = 'amoxicilline'",  # 0 and NULL (nullable int)
        "UPDATE article SET libelle = libelle",  # control: rewritten rows, same values, must NOT change
        "UPDATE article SET service_id = NULL WHERE libelle = 'paracetamol'",  # a reference removed
        "UPDATE service SET code = 'PHARMACIE' WHERE code = 'PHARMA'",  # referenced key renamed
        "UPDATE famille SET code = 'ANTALGIQUE' WHERE code = 'ANTALG'",  # key part through a uuid id
        # with the foreign-key triggers off (replica role), as a bulk load or a restore might leave things:
        f"{_NO_FK}UPDATE lien SET article_id = 88888888 WHERE code = 'L2'",  # one dangling id for another
        f"{_NO_FK}UPDATE lien SET article_id = 99999999 WHERE code = 'L1'",  # a real reference now dangling
    ],
)
def test_what_the_fingerprint_tells_apart(pair, change):
    a, _ = pair
    before = fingerprint(a)
    execute(a, change)
    after = fingerprint(a)
    unchanged = change.endswith("libelle = libelle") or "88888888" in change
    assert (after == before) is unchanged, change


def test_swapping_values_between_rows_changes_the_fingerprint(pair):
    """Sums of linear record hashes would not see two rows exchanging a value; the mixed row hash does."""
    a, _ = pair
    before = fingerprint(a)
    execute(
        a,
        "UPDATE article SET libelle = CASE libelle WHEN 'paracetamol' THEN 'ibuprofene' ELSE 'paracetamol' END "
        "WHERE libelle IN ('paracetamol', 'ibuprofene')",
    )
    assert fingerprint(a).differing(before) == ["article"]


def test_touched_rows_add_up_to_the_full_table_whatever_the_ids(pair):
    """Every way of computing them agrees: streamed alone, streamed together, read by ids."""
    locals_ = []
    for dsn in pair:

        def work(cur: Any, catalog: Any) -> list[Any]:
            cur.execute("SELECT array_agg(id) FROM article")
            ids = cur.fetchone()[0]
            tables = ["article"]
            return [
                (scope_fingerprint(cur, catalog, tables), local_scope_fingerprint(cur, catalog, tables)),
                scope_fingerprints(cur, catalog, tables),
                touched_fingerprints(cur, catalog=catalog, ids={"article": ids}),
            ]

        alone, together, by_ids = _with(dsn, work)
        assert alone == together == by_ids
        locals_.append(alone[1])
    assert locals_[0] != locals_[1]  # the local fingerprint sees the ids, which differ


def test_streamed_in_tiny_batches_gives_the_same_fingerprint(pair):
    a, _ = pair

    def work(cur: Any, catalog: Any) -> list[int]:
        out = []
        for batch in (1, 3, 100_000):
            hasher = RowHasher(cur, catalog, batch=batch)
            rows = [
                h
                for part in hasher.stream(cur.connection, catalog.table("article"))
                for h in part.row.tolist()
            ]
            out.append(sorted(rows))
        return out

    one, three, big = _with(a, work)
    assert one == three == big and len(big) == 4


def test_a_row_whose_id_is_the_null_marker_is_refused_by_name(pair):
    a, _ = pair
    execute(a, "INSERT INTO service VALUES (-2147483648, 'MARKER', NULL)")
    with pytest.raises(ChangesetError, match=r"table service has a row with id -2147483648.*renumber"):
        fingerprint(a)


def test_sparse_and_dense_ids_resolve_the_same(make_db):
    """Referenced ids far apart (sorted lookup) and close together (direct index) give the same hashes."""
    dense, sparse = make_db("rh_dense"), make_db("rh_sparse")
    fill(dense, offset=0)
    fill(sparse, offset=0)
    execute(sparse, "ALTER TABLE article DROP CONSTRAINT article_service_id_fkey")
    execute(sparse, "UPDATE service SET id = id + 2000000000 WHERE code = 'URG'")
    execute(sparse, "UPDATE article SET service_id = service_id + 2000000000 WHERE service_id = 1000000")
    execute(sparse, "ALTER TABLE article ADD FOREIGN KEY (service_id) REFERENCES service (id)")
    assert fingerprint(dense) == fingerprint(sparse)
