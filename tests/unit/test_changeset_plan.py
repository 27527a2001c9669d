"""Dependency order of managed tables and cycle refusal (pure: catalogs built by hand)."""

from __future__ import annotations

import pytest

from gardien.catalog import BoundTable, Catalog, ForeignKey
from gardien.config import TableConfig
from gardien.errors import ConfigurationError
from gardien.plan import table_order


def _catalog(edges: dict[str, list[str]]) -> Catalog:
    tables = tuple(
        BoundTable(
            name=name,
            schema="public",
            pk="id",
            pk_identity=True,
            natural_key=("code",),
            columns=("code", *(f"{p}_id" for p in parents)),
            types={},
            fks={f"{p}_id": ForeignKey(f"{p}_id", p) for p in parents},
            config=TableConfig(name=name, natural_key=["code"]),
        )
        for name, parents in edges.items()
    )
    return Catalog(schema="public", tables=tables, fingerprint="f")


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"child": ["parent"], "parent": []}, ["parent", "child"]),
        ({"tree": ["tree"]}, ["tree"]),
        ({"c": ["b", "a"], "b": ["a"], "a": []}, ["a", "b", "c"]),
    ],
    ids=["parent-first", "self-reference-allowed", "diamond"],
)
def test_table_order_parents_before_children(edges, expected):
    assert table_order(_catalog(edges)) == expected


def test_table_order_cycle_is_refused_and_named():
    with pytest.raises(ConfigurationError, match=r"cycle: a -> b -> a"):
        table_order(_catalog({"a": ["b"], "b": ["a"]}))
