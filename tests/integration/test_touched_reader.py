"""touched.Reader (plain columns, decoded in Python) gives exactly the portable form RowSql's JSON gives."""

from __future__ import annotations

import json

from psycopg2 import sql
from test_engine_support import BASE_STATE, catalog_config, create_schema, execute, load

from gardien import pg
from gardien.catalog import bind_catalog
from gardien.portable import RowSql, freeze, set_session
from gardien.touched import Reader


def test_reader_rows_equal_the_json_portable_form(make_db):
    dsn = make_db("reader")
    create_schema(dsn)
    load(dsn, BASE_STATE)
    # Awkward values: quotes, backslashes, tabs, unicode, empty text, NULLs, a soft-deleted site, an
    # out-of-scope parameter, a dangling parent (foreign-key triggers off).
    execute(dsn, "UPDATE unit SET label = %s WHERE code = 'U2'", ('Cardio "B"\t\\ été',))
    execute(dsn, "UPDATE param SET valeur = '' WHERE cle = 'P2'")
    execute(dsn, "UPDATE site SET actif = false WHERE code = 'S2'")
    execute(
        dsn, "SET session_replication_role = replica; UPDATE unit SET parent_id = 424242 WHERE code = 'U3'"
    )
    conn = pg.connect(dsn)
    try:
        catalog = bind_catalog(conn, catalog_config())
        with conn.cursor() as cur:
            set_session(cur)
            for table in catalog.tables:
                rs = RowSql.build(catalog, table)
                cur.execute(
                    f"SELECT t0.{table.pk}, {rs.key.as_string(cur)}::text, {rs.values.as_string(cur)}::text "
                    f"FROM {rs.from_clause().as_string(cur)}"
                )
                expected = {
                    i: (
                        freeze(json.loads(k)),
                        dict(zip(table.value_columns, freeze(json.loads(v)), strict=True)),
                    )
                    for i, k, v in cur.fetchall()
                }
                reader = Reader(catalog, table)
                cur.execute(reader.where(sql.SQL("TRUE")))
                got = {i: (k, v) for k, i, v in map(reader.decode, cur.fetchall())}
                assert got == expected, table.name
                assert len(got) >= 2
    finally:
        conn.rollback()
        conn.close()
