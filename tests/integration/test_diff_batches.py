"""The diff's batched merge: tiny batches give the same changeset and fingerprints as one big batch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_engine_support import BASE_STATE, catalog_config, database_pair, execute, load, reset

from gardien import diff as diff_module
from gardien.catalog import bind_catalog
from gardien.diff import diff
from gardien.errors import SourceDataError
from gardien.fingerprint import scope_fingerprint
from gardien.pg import connect
from gardien.portable import set_session


@pytest.fixture(scope="module")
def pair(pg_admin_dsn: str) -> Iterator[tuple[str, str]]:
    with database_pair(pg_admin_dsn, "batch") as dsns:
        yield dsns


@pytest.fixture
def states(pair: tuple[str, str]) -> tuple[str, str]:
    """60 parameters in the source; the target lacks some, has extra ones and differs on others."""
    src, tgt = pair
    for dsn in pair:
        reset(dsn)
        load(dsn, BASE_STATE)
    execute(src, "INSERT INTO param (cle, valeur) SELECT 'K' || i, 'v' || i FROM generate_series(1, 60) i")
    execute(tgt, "INSERT INTO param (cle, valeur) SELECT 'K' || i, 'v' || i FROM generate_series(5, 70) i")
    execute(tgt, "UPDATE param SET valeur = 'changed' WHERE cle IN ('K10', 'K11', 'K40')")
    return src, tgt


def _fingerprint(dsn: str):
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            set_session(cur)
            return scope_fingerprint(cur, bind_catalog(conn, catalog_config()))
    finally:
        conn.rollback()
        conn.close()


@pytest.mark.parametrize("batch", [1, 2, 7, 65_536], ids=["one-row", "two-rows", "seven-rows", "default"])
def test_diff_any_batch_size_gives_same_changes_and_fingerprints(states, monkeypatch, batch):
    monkeypatch.setattr(diff_module, "BATCH", batch)
    changeset = diff(*states, catalog_config=catalog_config())
    params = changeset.for_table("param")
    assert sorted(k[0] for k in (i.key for i in params.inserts)) == ["K1", "K2", "K3", "K4"]
    assert sorted(u.key[0] for u in params.updates) == ["K10", "K11", "K40"]
    assert sorted(d.key[0] for d in params.deletes) == [f"K{i}" for i in range(61, 71)]
    assert changeset.source_fingerprint == _fingerprint(states[0])
    assert changeset.target_fingerprint == _fingerprint(states[1])


@pytest.mark.parametrize("batch", [1, 3, 65_536], ids=["one-row", "three-rows", "default"])
def test_diff_duplicate_key_across_batches_is_named(states, monkeypatch, batch):
    monkeypatch.setattr(diff_module, "BATCH", batch)
    execute(states[0], "INSERT INTO param (cle, valeur) VALUES ('K33', 'again'), ('K33', 'thrice')")
    with pytest.raises(SourceDataError, match=r'1 duplicated key\(s\):\n  duplicate natural key \["K33"\]'):
        diff(*states, catalog_config=catalog_config())


@pytest.mark.parametrize("spill", [0, 3, 62], ids=["both-spill", "both-spill-late", "target-only-spills"])
def test_diff_spilled_to_partition_files_gives_the_same_changes_and_fingerprints(states, monkeypatch, spill):
    """Past SPILL_ROWS a side goes to temporary files by key-hash partition (bounded memory): same result,
    also when only one side spills (the source has 60 parameters, the target 66)."""
    expected = diff(*states, catalog_config=catalog_config())
    monkeypatch.setattr(diff_module, "BATCH", 2)
    monkeypatch.setattr(diff_module, "SPILL_ROWS", spill)
    created = []
    real_init = diff_module._Spilled.__init__

    def counting_init(self):
        created.append(self)
        real_init(self)

    monkeypatch.setattr(diff_module._Spilled, "__init__", counting_init)
    spilled = diff(*states, catalog_config=catalog_config())
    assert created  # the spill path ran
    if spill == 62:
        assert len(created) == 1  # param's target side only
    assert spilled.id == expected.id
    assert spilled.source_fingerprint == expected.source_fingerprint
    assert spilled.target_fingerprint == expected.target_fingerprint


def test_diff_duplicate_key_is_named_when_spilled(states, monkeypatch):
    monkeypatch.setattr(diff_module, "SPILL_ROWS", 0)
    execute(states[0], "INSERT INTO param (cle, valeur) VALUES ('K33', 'again')")
    with pytest.raises(SourceDataError, match=r'duplicate natural key \["K33"\]'):
        diff(*states, catalog_config=catalog_config())
