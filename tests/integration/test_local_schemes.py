"""The local fingerprint (rollback proofs): the current scheme sees two rows exchanging their values; the
scheme of earlier builds did not, and is still computed for journals that recorded it."""

from __future__ import annotations

from test_engine_support import BASE_STATE, create_schema, execute, load, local_fingerprint

from gardien.fingerprint import LOCAL_SCHEME


def test_rows_exchanging_values_change_the_current_local_fingerprint_only(make_db):
    dsn = make_db("local_schemes")
    create_schema(dsn)
    load(dsn, BASE_STATE)
    before = {scheme: local_fingerprint(dsn, scheme) for scheme in ("local/1", LOCAL_SCHEME)}
    # Two units swap labels and budgets: every column's multiset is unchanged, every row is not.
    execute(
        dsn,
        "UPDATE unit u SET label = o.label, budget = o.budget FROM unit o "
        "WHERE (u.code, o.code) IN (('U1', 'U3'), ('U3', 'U1'))",
    )
    after = {scheme: local_fingerprint(dsn, scheme) for scheme in ("local/1", LOCAL_SCHEME)}
    # The earlier sums are linear in the columns' hashes modulo 2**64: the exchange only shows, if at all,
    # through wrap-around carries (about one chance in two).
    old, new = before["local/1"].table("unit"), after["local/1"].table("unit")
    assert (new.low - old.low) % 2**64 == 0 and (new.high - old.high) % 2**64 == 0
    assert after[LOCAL_SCHEME].differing(before[LOCAL_SCHEME]) == ["unit"]
    current_old, current_new = before[LOCAL_SCHEME].table("unit"), after[LOCAL_SCHEME].table("unit")
    assert (current_new.low - current_old.low) % 2**64 != 0
