"""A forged changeset (its id recomputed, so it passes the hash check) whose shape does not fit the catalog
is refused before anything is written, naming what is wrong — never silently trimmed or shown as a conflict."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from test_engine_support import BASE_STATE, NOW, catalog_config, database_pair, execute, load, physical, reset

from gardien.apply import deploy
from gardien.changeset import Changeset
from gardien.diff import diff
from gardien.errors import ChangesetError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def databases(pg_admin_dsn):
    with database_pair(pg_admin_dsn, "forged") as dsns:
        yield dsns


@pytest.fixture
def changeset(databases) -> dict[str, Any]:
    """A real changeset with an insert, an update and a delete in ``unit`` (body as a dict)."""
    source, target = databases
    for dsn in databases:
        reset(dsn)
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(
        source, "INSERT INTO unit (code, label, site_id) SELECT 'U9', 'Neuf', id FROM site WHERE code = 'S1'"
    )
    execute(source, "UPDATE unit SET label = 'Cardiologie' WHERE code = 'U2'")
    execute(
        target, "INSERT INTO unit (code, label, site_id) SELECT 'U8', 'Vieux', id FROM site WHERE code = 'S2'"
    )
    return diff(source, target, catalog_config=catalog_config()).to_dict()["changeset"]


def _forge(body: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> Changeset:
    body = copy.deepcopy(body)
    edit(body)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    doc = {"id": hashlib.sha256(canonical.encode()).hexdigest(), "changeset": body}
    return Changeset.from_json(json.dumps(doc))


def _unit(body: dict[str, Any]) -> dict[str, Any]:
    return next(t for t in body["tables"] if t["table"] == "unit")


FORGERIES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "insert-unknown-column",
        lambda b: _unit(b)["inserts"][0]["values"].update(colour="red"),
        r"unit \[\"U9\"\]: insert names column 'colour', which unit does not have",
    ),
    (
        "update-unknown-column",
        lambda b: _unit(b)["updates"][0]["changes"].update(colour={"before": None, "after": "red"}),
        r"unit \[\"U2\"\]: update names column 'colour', which unit does not have",
    ),
    (
        "update-changes-only-unknown-column",
        lambda b: _unit(b)["updates"][0].update(changes={"labl": {"before": "Cardio", "after": "X"}}),
        r"update names column 'labl', which unit does not have",
    ),
    (
        "baseline-unknown-column",
        lambda b: _unit(b)["deletes"][0]["baseline"].update(colour="red"),
        r"unit \[\"U8\"\]: delete names column 'colour'",
    ),
    (
        "update-ignored-column",
        lambda b: _unit(b)["updates"][0]["changes"].update(
            updated_at={"before": None, "after": "2026-01-01"}
        ),
        r"update names column 'updated_at', which is not managed \(listed under ignore\)",
    ),
    (
        "update-natural-key",
        lambda b: _unit(b)["updates"][0]["changes"].update(code={"before": "U2", "after": "U7"}),
        r"update changes column 'code', part of the natural key",
    ),
    (
        "insert-missing-column",
        lambda b: _unit(b)["inserts"][0]["values"].pop("label"),
        r"unit \[\"U9\"\]: insert lacks column 'label'",
    ),
    (
        "unknown-table",
        lambda b: b["tables"].append({"table": "unite", "inserts": [], "updates": [], "deletes": []}),
        r"names table 'unite', which the catalog does not manage",
    ),
    (
        "key-width",
        lambda b: _unit(b)["inserts"][0].update(key=["U9", "extra"]),
        r"unit: insert key \[\"U9\",\"extra\"\] has 2 component\(s\); the natural key \(code\) has 1",
    ),
    (
        "reference-as-text",
        lambda b: _unit(b)["inserts"][0]["values"].update(site_id="S1"),
        r"column 'site_id' holds a reference to site by its natural key \(a list\) or null, got \"S1\"",
    ),
    (
        "text-as-list",
        lambda b: _unit(b)["inserts"][0]["values"].update(label=["x"]),
        r"column 'label' holds text or null, got \[\"x\"\]",
    ),
]


@pytest.mark.parametrize(
    ("edit", "message"), [(e, m) for _, e, m in FORGERIES], ids=[i for i, _, _ in FORGERIES]
)
def test_apply_forged_changeset_is_refused_naming_the_problem(databases, changeset, edit, message):
    _, target = databases
    before = physical(target)
    forged = _forge(changeset, edit)
    with pytest.raises(ChangesetError, match=message) as caught:
        deploy(target, forged, catalog_config=catalog_config(), target="tgt", applied_at=NOW)
    assert "nothing was applied" in str(caught.value)
    assert physical(target) == before
    assert "conflict" not in str(caught.value)


def test_apply_unforged_changeset_still_applies(databases, changeset):
    _, target = databases
    result = deploy(
        target,
        _forge(changeset, lambda b: None),
        catalog_config=catalog_config(),
        target="tgt",
        applied_at=NOW,
    )
    assert result.status == "applied"
