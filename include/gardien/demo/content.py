"""The demo hospital's production content as portable rows (foreign keys held as natural keys), from a seed."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from gardien.demo import data, formulary

LINES_PER_SCALE = 500  # ligne_protocole rows per unit of scale: --scale 2000 gives 1,000,000 lines
PROTOCOLS_PER_SCALE = 50  # so protocols average 10 lines (1 to 19 each)
EXTRA_DRUGS_PER_SCALE = 4  # generic presentations added per unit of scale beyond 1 (capped by the labs)
BASE_TIME = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # fixed: the content must not depend on the clock


@dataclass(frozen=True, slots=True)
class TableSpec:
    """Shape of one demo table: its columns (besides ``id``), natural key and foreign keys."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    references: tuple[tuple[str, str], ...] = ()  # (column, referenced table); target's key is one column

    def index(self, column: str) -> int:
        return self.columns.index(column)


# In load order: every referenced table comes before the tables that reference it.
TABLES: tuple[TableSpec, ...] = (
    TableSpec("etablissement", ("finess", "nom", "ville", "actif", "updated_at"), ("finess",)),
    TableSpec(
        "unite_fonctionnelle",
        ("code", "libelle", "etablissement_id", "parent_id", "actif", "updated_at"),
        ("code",),
        (("etablissement_id", "etablissement"), ("parent_id", "unite_fonctionnelle")),
    ),
    TableSpec("unite_mesure", ("code", "libelle"), ("code",)),
    TableSpec("profil", ("code", "libelle", "uf_autorisees", "updated_at"), ("code",)),
    TableSpec("droit", ("code", "libelle", "domaine"), ("code",)),
    TableSpec(
        "profil_droit",
        ("profil_id", "droit_id"),
        ("profil_id", "droit_id"),
        (("profil_id", "profil"), ("droit_id", "droit")),
    ),
    TableSpec(
        "medicament",
        ("code_ucd", "libelle", "code_atc", "forme", "unite_id", "actif", "updated_at"),
        ("code_ucd",),
        (("unite_id", "unite_mesure"),),
    ),
    TableSpec("protocole", ("code", "libelle", "service_code", "actif", "updated_at"), ("code",)),
    TableSpec(
        "ligne_protocole",
        ("protocole_id", "rang", "medicament_id", "dose", "unite_id", "frequence"),
        ("protocole_id", "rang"),
        (("protocole_id", "protocole"), ("medicament_id", "medicament"), ("unite_id", "unite_mesure")),
    ),
    TableSpec(
        "regle_alerte_dose",
        ("medicament_id", "population", "dose_min", "dose_max", "unite_id"),
        ("medicament_id", "population"),
        (("medicament_id", "medicament"), ("unite_id", "unite_mesure")),
    ),
    TableSpec("examen_labo", ("code", "libelle", "tube", "unite_code", "actif"), ("code",)),
    TableSpec("formulaire", ("code", "libelle", "version"), ("code",)),
    TableSpec(
        "champ_formulaire",
        ("formulaire_id", "code", "libelle", "type_champ", "ordre", "obligatoire"),
        ("formulaire_id", "code"),
        (("formulaire_id", "formulaire"),),
    ),
    TableSpec("parametre_global", ("cle", "valeur", "description"), ("cle",)),
)
TABLE_BY_NAME: Mapping[str, TableSpec] = MappingProxyType({t.name: t for t in TABLES})

# Rows carry no surrogate ids: a referencing column holds the natural key of the row it points to, so the
# same content loads into each environment with that environment's own ids.
Row = tuple  # values in TableSpec.columns order
Variant = tuple[str, formulary.Drug, str | None]  # (UCD, drug, laboratory or None for the originator)


@dataclass(frozen=True, slots=True)
class Dataset:
    """The content of one environment. ``appended[t]`` rows at the end of table t are new in it."""

    rows: Mapping[str, tuple[Row, ...]]
    appended: Mapping[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {t.name: len(self.rows[t.name]) for t in TABLES}


def row_key(spec: TableSpec, row: Row) -> object:
    """The natural key of ``row``: the value itself for one-column keys, else a tuple."""
    if len(spec.key) == 1:
        return row[spec.columns.index(spec.key[0])]
    return tuple(row[spec.columns.index(c)] for c in spec.key)


def stamp(minutes: int) -> str:
    """A fixed-clock timestamp ``minutes`` after BASE_TIME, in PostgreSQL's input format."""
    return (BASE_TIME + timedelta(minutes=minutes)).isoformat(sep=" ")


def line_count(scale: int) -> int:
    """Number of ligne_protocole rows in production at ``scale`` (exactly linear)."""
    return LINES_PER_SCALE * scale


@dataclass(frozen=True, slots=True)
class UnitTree:
    rows: tuple[Row, ...]
    ufs_by_service: Mapping[str, tuple[str, ...]]  # service suffix (CARDIO) → leaf UF codes, all sites


def unit_tree(rng: random.Random) -> UnitTree:
    """Sites → pôles → services → UFs: the self-referencing unite_fonctionnelle table, 3 levels deep."""
    rows: list[Row] = []
    by_service: dict[str, list[str]] = {}
    for site, _nom, _ville, site_finess in data.ETABLISSEMENTS:
        number = 0
        for pole, services in data.SITE_POLES[site].items():
            pole_label, pole_services = data.POLES[pole]
            pole_code = f"P{site}-{pole}"
            rows.append((pole_code, pole_label, site_finess, None, True, stamp(rng.randrange(60 * 24 * 90))))
            for suffix, label, kinds in pole_services:
                if services is not None and suffix not in services:
                    continue
                service_code = f"S{site}-{suffix}"
                rows.append((service_code, label, site_finess, pole_code, True, stamp(rng.randrange(129600))))
                for kind in kinds:
                    number += 1
                    code = f"UF{site}{number:03d}"
                    uf_label = f"{label} - {data.UF_KINDS[kind]}"
                    rows.append(
                        (code, uf_label, site_finess, service_code, True, stamp(rng.randrange(129600)))
                    )
                    by_service.setdefault(suffix, []).append(code)
    return UnitTree(
        rows=tuple(rows),
        ufs_by_service=MappingProxyType({k: tuple(v) for k, v in by_service.items()}),
    )


def _drug_label(drug: formulary.Drug, lab: str | None) -> str:
    if lab is None:
        return drug.libelle
    words = drug.libelle.split(" ")
    at = next((i for i, w in enumerate(words) if w[:1].isdigit()), len(words))
    return " ".join([*words[:at], lab, *words[at:]])


def princeps_ucd(drug_index: int) -> str:
    """UCD of the originator presentation of ``formulary.DRUGS[drug_index]`` (listed at every scale)."""
    return formulary.ucd13(1000 + drug_index)


def drug_variants(scale: int) -> list[Variant]:
    """(UCD, drug, laboratory) for the formulary at ``scale``: every drug once, then generics."""
    variants: list[Variant] = [(princeps_ucd(i), d, None) for i, d in enumerate(formulary.DRUGS)]
    extra = min(EXTRA_DRUGS_PER_SCALE * (scale - 1), len(formulary.DRUGS) * len(formulary.LABORATOIRES))
    for n in range(extra):
        lab_index, drug_index = divmod(n, len(formulary.DRUGS))
        serial = 10000 + lab_index * 1000 + drug_index
        variants.append(
            (formulary.ucd13(serial), formulary.DRUGS[drug_index], formulary.LABORATOIRES[lab_index])
        )
    return variants


def medicament_row(ucd: str, drug: formulary.Drug, lab: str | None, minutes: int) -> Row:
    return (ucd, _drug_label(drug, lab), drug.atc, drug.forme, drug.unite, True, stamp(minutes))


def dose_rules(ucd: str, drug: formulary.Drug) -> list[Row]:
    """The dose-alert rules of one drug: adults always, children and the elderly when defined."""
    rules: list[Row] = [(ucd, "ADULTE", drug.adult[0], drug.adult[1], drug.unite)]
    if drug.pediatric is not None:
        rules.append((ucd, "PEDIATRIE", drug.pediatric[0], drug.pediatric[1], drug.pediatric[2]))
    if drug.geriatric is not None:
        rules.append((ucd, "GERIATRIE", drug.geriatric[0], drug.geriatric[1], drug.unite))
    return rules


def _profiles(tree: UnitTree) -> tuple[list[Row], list[Row]]:
    care = [s for s in tree.ufs_by_service if s not in ("PHARMA", "LABO")]
    profils: list[Row] = []
    grants: list[Row] = []
    for n, (code, label, rights, scope) in enumerate(data.PROFILS):
        services = care if scope == "*" else scope
        ufs = [uf for s in services for uf in tree.ufs_by_service.get(s, ())]
        profils.append((code, label, ";".join(sorted(ufs)), stamp(1000 + 37 * n)))
        grants.extend((code, right) for right in rights)
    return profils, grants


def _protocols(
    rng: random.Random, *, scale: int, tree: UnitTree, variants: list[Variant]
) -> tuple[list[Row], list[Row]]:
    ucds_by_key: dict[str, list[tuple[str, formulary.Drug]]] = {}
    for ucd, drug, _lab in variants:
        ucds_by_key.setdefault(drug.key, []).append((ucd, drug))
    # Every (drug, dose, unit, frequency) a template may use, so a line costs one random draw.
    combos = [
        [
            (ucd, dose, drug.unite, freq)
            for key in keys
            for ucd, drug in ucds_by_key[key]
            for dose in drug.doses
            for freq in formulary.FREQUENCES
        ]
        for _label, _services, keys in formulary.PROTOCOL_TEMPLATES
    ]
    protocols: list[Row] = []
    lines: list[Row] = []
    rnd = rng.random
    n_templates = len(formulary.PROTOCOL_TEMPLATES)
    count = 0
    for i in range(PROTOCOLS_PER_SCALE * scale):
        template = i % n_templates
        label, services, _keys = formulary.PROTOCOL_TEMPLATES[template]
        service = services[int(rnd() * len(services))]
        service_ufs = tree.ufs_by_service[service]
        # One protocol in ten is group-wide: no service, the logical reference is simply empty.
        service_code = None if i % 10 == 9 else service_ufs[int(rnd() * len(service_ufs))]
        version = f" (v{i // n_templates + 1})" if i >= n_templates else ""
        code = f"PROT-{i + 1:06d}"
        protocols.append((code, f"{label}{version}", service_code, True, stamp(int(rnd() * 400000))))
        # Pairs of protocols share 20 lines, so the table holds exactly LINES_PER_SCALE * scale rows.
        count = 1 + int(rnd() * 19) if i % 2 == 0 else 20 - count
        pool = combos[template]
        size = len(pool)
        for rang in range(1, count + 1):
            lines.append((code, rang, *pool[int(rnd() * size)]))
    return protocols, lines


def generate_dataset(*, scale: int, seed: int) -> Dataset:
    """The production content at ``scale``, fully determined by ``scale`` and ``seed``."""
    rng = random.Random(seed)
    tree = unit_tree(rng)
    variants = drug_variants(scale)
    profils, grants = _profiles(tree)
    protocols, lines = _protocols(rng, scale=scale, tree=tree, variants=variants)
    rows: dict[str, tuple[Row, ...]] = {
        "etablissement": tuple(
            (f, nom, ville, True, stamp(10 * s)) for s, nom, ville, f in data.ETABLISSEMENTS
        ),
        "unite_fonctionnelle": tree.rows,
        "unite_mesure": data.UNITES_MESURE,
        "profil": tuple(profils),
        "droit": data.DROITS,
        "profil_droit": tuple(grants),
        "medicament": tuple(
            medicament_row(ucd, drug, lab, rng.randrange(400000)) for ucd, drug, lab in variants
        ),
        "protocole": tuple(protocols),
        "ligne_protocole": tuple(lines),
        "regle_alerte_dose": tuple(r for ucd, drug, _lab in variants for r in dose_rules(ucd, drug)),
        "examen_labo": tuple((code, lib, tube, unit, True) for code, lib, tube, unit in data.EXAMENS_LABO),
        "formulaire": tuple((code, lib, version) for code, (lib, version, _f) in data.FORMULAIRES.items()),
        "champ_formulaire": tuple(
            (form, code, lib, kind, ordre, mandatory)
            for form, (_lib, _v, fields) in data.FORMULAIRES.items()
            for ordre, (code, lib, kind, mandatory) in enumerate(fields, start=1)
        ),
        "parametre_global": data.PARAMETRES_GLOBAUX,
    }
    return Dataset(rows=MappingProxyType(rows))
