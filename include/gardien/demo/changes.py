"""The pending changes qualification carries over production: a realistic set, or a planted benchmark set."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from gardien.demo import formulary
from gardien.demo.content import (
    TABLE_BY_NAME,
    Dataset,
    Row,
    dose_rules,
    medicament_row,
    princeps_ucd,
    row_key,
    stamp,
)
from gardien.errors import UsageError

CHANGE_MINUTES = 460_000  # qualification edits are stamped after every production timestamp


@dataclass(frozen=True, slots=True)
class PendingChange:
    """One change qualification holds and production does not, named by natural key.

    ``kind`` is insert, update, soft_delete or delete; ``key`` lists the natural-key values as text, with
    a foreign key given as the referenced row's natural key; ``field``/``before``/``after`` are set for
    updates and soft deletes, as text (booleans true/false; numbers as generated, so 10 where PostgreSQL
    prints numeric(12,3) as 10.000: compare numerically).
    """

    kind: str
    table: str
    key: tuple[str, ...]
    field: str | None = None
    before: str | None = None
    after: str | None = None
    description: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "table": self.table,
            "key": list(self.key),
            "field": self.field,
            "before": self.before,
            "after": self.after,
            "description": self.description,
        }


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Editor:
    """Mutable working copy of a dataset that records every edit as a PendingChange."""

    def __init__(self, base: Dataset) -> None:
        self.rows = {name: list(rows) for name, rows in base.rows.items()}
        self.appended: dict[str, int] = {}
        self.changes: list[PendingChange] = []
        self._index: dict[str, dict[object, int]] = {}

    def _position(self, table: str, key: object) -> int:
        if table not in self._index:
            spec = TABLE_BY_NAME[table]
            self._index[table] = {row_key(spec, row): i for i, row in enumerate(self.rows[table])}
        return self._index[table][key]

    def get(self, table: str, key: object) -> Row:
        return self.rows[table][self._position(table, key)]

    @staticmethod
    def _key_text(key: object) -> tuple[str, ...]:
        return tuple(_text(k) for k in key) if isinstance(key, tuple) else (_text(key),)

    def update(self, table: str, key: object, column: str, value: object, description: str) -> None:
        spec = TABLE_BY_NAME[table]
        position = self._position(table, key)
        row = list(self.rows[table][position])
        before = row[spec.index(column)]
        row[spec.index(column)] = value
        if "updated_at" in spec.columns:
            row[spec.index("updated_at")] = stamp(CHANGE_MINUTES + len(self.changes))
        self.rows[table][position] = tuple(row)
        kind = "soft_delete" if column == "actif" and value is False else "update"
        self.changes.append(
            PendingChange(kind, table, self._key_text(key), column, _text(before), _text(value), description)
        )

    def insert(self, table: str, row: Row, description: str) -> None:
        spec = TABLE_BY_NAME[table]
        self.rows[table].append(row)
        self.appended[table] = self.appended.get(table, 0) + 1
        self._index.pop(table, None)
        self.changes.append(
            PendingChange("insert", table, self._key_text(row_key(spec, row)), None, None, None, description)
        )

    def delete(self, table: str, keys: set[object], description: str) -> None:
        """Hard-delete rows present in production (never rows this editor inserted: they must stay last)."""
        spec = TABLE_BY_NAME[table]
        kept = [row for row in self.rows[table] if row_key(spec, row) not in keys]
        if len(kept) != len(self.rows[table]) - len(keys):
            raise ValueError(
                f"delete of {len(keys)} {table} rows matched {len(self.rows[table]) - len(kept)}"
            )
        self.rows[table] = kept
        self._index.pop(table, None)
        self.changes.extend(
            PendingChange("delete", table, self._key_text(k), description=description)
            for k in sorted(keys, key=str)
        )

    def result(self) -> tuple[Dataset, tuple[PendingChange, ...]]:
        rows = {name: tuple(rows) for name, rows in self.rows.items()}
        dataset = Dataset(rows=MappingProxyType(rows), appended=MappingProxyType(dict(self.appended)))
        return dataset, tuple(self.changes)


def realistic_changes(prod: Dataset) -> tuple[Dataset, tuple[PendingChange, ...]]:
    """Qualification = production + the edits a configuration team would have pending for a release."""
    ed = _Editor(prod)
    ufs = ed.rows["unite_fonctionnelle"]
    gastro = next(r[0] for r in ufs if r[3] == "S1-GASTRO")
    pneumo_hdj = next(r[0] for r in ufs if r[3] == "S2-PNEUMO" and r[1].endswith("Hôpital de jour"))
    cardio_hc = next(r[0] for r in ufs if r[3] == "S1-CARDIO" and r[1].endswith("Hospitalisation complète"))
    ed.update(
        "unite_fonctionnelle",
        gastro,
        "libelle",
        "Hépato-gastro-entérologie - Hospitalisation complète",
        "renamed label: gastro-enterology becomes hepato-gastro-enterology",
    )
    ed.update(
        "unite_fonctionnelle", pneumo_hdj, "actif", False, "retired unit: pneumology day hospital closes"
    )

    # A new intensive-care unit under cardiology, and the nurses' profile opened to it.
    site1_numbers = [int(r[0][3:]) for r in ufs if r[0].startswith("UF1")]
    usic = f"UF1{max(site1_numbers) + 1:03d}"
    finess = next(r[2] for r in ufs if r[0] == cardio_hc)
    ed.insert(
        "unite_fonctionnelle",
        (
            usic,
            "Cardiologie - Unité de soins intensifs cardiologiques",
            finess,
            "S1-CARDIO",
            True,
            stamp(CHANGE_MINUTES),
        ),
        "new care unit (USIC) under cardiology",
    )
    # Protocols attached to the retired unit move to its parent service (a retired unit still named by a
    # protocol would fail validation: "deleted row still referenced").
    pneumo_service = next(r[3] for r in ufs if r[0] == pneumo_hdj)
    for proto in list(ed.rows["protocole"]):
        if proto[2] == pneumo_hdj:
            ed.update(
                "protocole",
                proto[0],
                "service_code",
                pneumo_service,
                "protocol moved from the retired day hospital to the pneumology service",
            )

    # Profiles stop opening the retired unit (a retired unit still listed would fail validation), and the
    # nurses' profile opens the new one, in the same edit.
    for profile in list(ed.rows["profil"]):
        listed = [uf for uf in profile[2].split(";") if uf]
        if profile[0] == "IDE":
            kept = [uf for uf in listed if uf != pneumo_hdj] + [usic]
            why = "nurses authorised on the new USIC unit (and no longer on the retired unit)"
        elif pneumo_hdj in listed:
            kept = [uf for uf in listed if uf != pneumo_hdj]
            why = "profile no longer opens the retired pneumology day hospital"
        else:
            continue
        ed.update("profil", profile[0], "uf_autorisees", ";".join(kept), why)
    ed.insert(
        "profil_droit",
        ("IDE", "PRESC_ANTICIPEE"),
        "new right granted: nurses apply anticipated prescriptions",
    )

    # A newly listed drug with its dose-alert rule, and a new protocol that uses it.
    new_ucd = formulary.ucd13(formulary.NEW_DRUG_UCD_SERIAL)
    ed.insert(
        "medicament",
        medicament_row(new_ucd, formulary.NEW_DRUG, None, CHANGE_MINUTES),
        "new drug in the formulary",
    )
    for rule in dose_rules(new_ucd, formulary.NEW_DRUG):
        ed.insert("regle_alerte_dose", rule, "dose-alert rule of the new drug")
    protocol = f"PROT-{len(ed.rows['protocole']) + 1:06d}"
    ed.insert(
        "protocole",
        (protocol, formulary.NEW_PROTOCOL_LABEL, cardio_hc, True, stamp(CHANGE_MINUTES)),
        "new protocol using the new drug",
    )
    # Protocols use the originator presentation of each drug, which every scale lists.
    princeps = {d.key: princeps_ucd(i) for i, d in enumerate(formulary.DRUGS)}
    princeps[formulary.NEW_DRUG.key] = new_ucd
    units = {d.key: d.unite for d in (*formulary.DRUGS, formulary.NEW_DRUG)}
    for rang, (drug, dose, freq) in enumerate(formulary.NEW_PROTOCOL_LINES, start=1):
        ed.insert(
            "ligne_protocole",
            (protocol, rang, princeps[drug], dose, units[drug], freq),
            "line of the new protocol",
        )

    ed.update(
        "regle_alerte_dose",
        (princeps["OXY5"], "ADULTE"),
        "dose_max",
        "10",
        "changed dose limit: oxycodone capped at 10 mg",
    )
    first_line = ed.get("ligne_protocole", ("PROT-000002", 1))
    new_freq = "toutes les 8 heures" if first_line[5] != "toutes les 8 heures" else "toutes les 6 heures"
    ed.update("ligne_protocole", ("PROT-000002", 1), "frequence", new_freq, "protocol line frequency changed")
    ed.update(
        "parametre_global",
        "SESSION.TIMEOUT_MINUTES",
        "valeur",
        "10",
        "changed global parameter: shorter session lock",
    )

    ed.delete(
        "champ_formulaire", {("ADM_ENTREE", "FAX_MEDECIN_TRAITANT")}, "form field removed (hard delete)"
    )
    ed.update("formulaire", "ADM_ENTREE", "version", 4, "form version bumped after a field removal")
    ed.insert(
        "champ_formulaire",
        ("EVAL_DOULEUR", "ALGOPLUS", "Échelle Algoplus (0-5)", "NOMBRE", 6, False),
        "new form field",
    )
    ed.update("formulaire", "EVAL_DOULEUR", "version", 3, "form version bumped after a new field")
    ed.delete("examen_labo", {"4537-7"}, "obsolete lab test removed (hard delete)")
    ed.insert(
        "examen_labo",
        ("2157-6", "Créatine kinase (CPK)", "Hépariné lithium (vert)", "UI/L", True),
        "new lab test",
    )
    return ed.result()


def _double(dose: str) -> str:
    text = format(Decimal(dose) * 2, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def bench_changes(
    prod: Dataset, *, updates: int, inserts: int, deletes: int, seed: int
) -> tuple[Dataset, tuple[PendingChange, ...]]:
    """Qualification = production + exactly ``updates``/``inserts``/``deletes`` protocol-line changes.

    Updates double a line's dose; inserts append lines after a protocol's last rank (never a key that a
    delete frees); deletes remove lines. Updated and deleted lines are distinct.

    Raises:
        UsageError: a count is negative, or updates + deletes exceed the protocol lines available.
    """
    lines = prod.rows["ligne_protocole"]
    if min(updates, inserts, deletes) < 0:
        raise UsageError(
            f"bench changes must be >= 0, got updates={updates} inserts={inserts} deletes={deletes}."
        )
    if updates + deletes > len(lines):
        raise UsageError(
            f"bench changes ask to update {updates} and delete {deletes} protocol lines but the scale only has "
            f"{len(lines)}; raise --scale (each unit of scale adds 500 lines) or lower the counts."
        )
    rng = random.Random(f"{seed}:bench")
    picked = rng.sample(range(len(lines)), updates + deletes)
    updated, deleted = picked[:updates], set(picked[updates:])
    changed: list[Row] = list(lines)
    changes: list[PendingChange] = []
    for i in sorted(updated):
        code, rang, ucd, dose, unit, freq = changed[i]
        changed[i] = (code, rang, ucd, _double(dose), unit, freq)
        changes.append(
            PendingChange(
                "update", "ligne_protocole", (code, str(rang)), "dose", dose, changed[i][3], "bench update"
            )
        )
    kept = [row for i, row in enumerate(changed) if i not in deleted]
    changes.extend(
        PendingChange(
            "delete", "ligne_protocole", (lines[i][0], str(lines[i][1])), description="bench delete"
        )
        for i in sorted(deleted)
    )
    last_rank: dict[str, int] = {}
    for code, rang, *_rest in lines:
        last_rank[code] = max(rang, last_rank.get(code, 0))
    protocols = list(last_rank)
    for _ in range(inserts):
        code = protocols[rng.randrange(len(protocols))]
        last_rank[code] += 1
        _c, _r, ucd, dose, unit, freq = lines[rng.randrange(len(lines))]
        kept.append((code, last_rank[code], ucd, dose, unit, freq))
        changes.append(
            PendingChange(
                "insert", "ligne_protocole", (code, str(last_rank[code])), description="bench insert"
            )
        )
    rows = dict(prod.rows)
    rows["ligne_protocole"] = tuple(kept)
    return Dataset(
        rows=MappingProxyType(rows), appended=MappingProxyType({"ligne_protocole": inserts})
    ), tuple(changes)
