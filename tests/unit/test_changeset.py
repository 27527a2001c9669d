"""The changeset value: canonical JSON, content id, tamper and structure checks (no database)."""

from __future__ import annotations

import json

import pytest

from gardien.changeset import Changeset, Delete, FieldChange, Insert, TableChanges, Update
from gardien.errors import ChangesetError
from gardien.fingerprint import ScopeFingerprint, TableFingerprint

FP = ScopeFingerprint(tables=(TableFingerprint("unit", 2, 12345678901234567890123, -5),))


def _changeset(label: str = "Cardio") -> Changeset:
    return Changeset(
        catalog_fingerprint="c" * 64,
        source_fingerprint=FP,
        target_fingerprint=FP,
        tables=(
            TableChanges(
                table="unit",
                inserts=(Insert(key=("U9",), values={"label": "Neuro", "parent_id": ("U1",)}),),
                updates=(
                    Update(
                        key=("U2",),
                        baseline={"label": "Cardio", "parent_id": None},
                        changes={"label": FieldChange("Cardio", label)},
                    ),
                ),
                deletes=(Delete(key=("U3",), baseline={"label": "Péd", "parent_id": ("U2",)}),),
            ),
        ),
    )


def test_changeset_json_round_trip_keeps_id_and_content():
    original = _changeset("Cardiologie")
    parsed = Changeset.from_json(original.to_json())
    assert parsed == original and parsed.id == original.id
    assert parsed.for_table("unit").inserts[0].values["parent_id"] == ("U1",)


def test_changeset_id_depends_on_content_only():
    assert _changeset("A").id == _changeset("A").id != _changeset("B").id
    assert len(_changeset().id) == 64


def test_changeset_json_is_canonical():
    text = _changeset().to_json()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_changeset_empty_is_normal():
    empty = Changeset(catalog_fingerprint="c", source_fingerprint=FP, target_fingerprint=FP, tables=())
    assert empty.is_empty and Changeset.from_json(empty.to_json()).is_empty


def _tamper(text: str) -> str:
    return text.replace('"Cardiologie"', '"Cardiologie!"')


def _reformat(text: str) -> str:
    doc = json.loads(text)
    doc["changeset"]["tables"][0]["inserts"][0]["values"]["label"] = "Autre"
    doc["id"] = (
        __import__("hashlib")
        .sha256(
            json.dumps(doc["changeset"], sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        )
        .hexdigest()
    )
    return json.dumps(doc)


def _bad_structure(text: str) -> str:
    import hashlib

    doc = json.loads(text)
    doc["changeset"]["tables"][0]["inserts"][0]["values"]["label"] = 42
    body = json.dumps(doc["changeset"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return json.dumps({"id": hashlib.sha256(body.encode()).hexdigest(), "changeset": doc["changeset"]})


def _earlier_format(text: str) -> str:
    import hashlib

    doc = json.loads(text)
    doc["changeset"]["format"] = "gardien.changeset/1"
    body = json.dumps(doc["changeset"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return json.dumps({"id": hashlib.sha256(body.encode()).hexdigest(), "changeset": doc["changeset"]})


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_tamper, r"was altered: its content hashes to"),
        (
            _earlier_format,
            r"has format gardien.changeset/1, made by another Gardien version .*Capture it again",
        ),
        (lambda t: t[:-5], r"not a changeset: invalid JSON"),
        (lambda t: json.dumps({"id": "x"}), r"expected an object with 'id' and 'changeset'"),
        (_bad_structure, r"malformed changeset .*unexpected value 42"),
    ],
    ids=["tampered", "earlier-format", "truncated", "wrong-shape", "bad-value-type"],
)
def test_changeset_from_json_bad_text_is_changeset_error(mutate, message):
    with pytest.raises(ChangesetError, match=message):
        Changeset.from_json(mutate(_changeset("Cardiologie").to_json()))


def test_changeset_from_json_rehashed_edit_is_a_different_changeset():
    original = _changeset("Cardiologie")
    edited = Changeset.from_json(_reformat(original.to_json()))
    assert edited.id != original.id  # approvals bound to the original id do not carry over


def test_fingerprint_shift_adds_the_effect_of_another_change():
    base = TableFingerprint("t", 10, 100, 200)
    before, after = TableFingerprint("t", 3, 5, 6), TableFingerprint("t", 4, 9, 1)
    assert base.shifted(after, before) == TableFingerprint("t", 11, 104, 195)
