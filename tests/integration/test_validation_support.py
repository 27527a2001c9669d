"""Shared helpers for the validation tests: the demo schema with a handful of clean rows (no tests here)."""

from __future__ import annotations

from pathlib import Path

from gardien import pg
from gardien.config import CatalogConfig, load_config
from gardien.validation.settings import ValidationSettings, parse_validation_settings

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_SQL = ROOT / "include" / "gardien" / "demo" / "schema.sql"
CONFIG = ROOT / "include" / "config" / "gardien.yaml"

SEED_SQL = """
INSERT INTO etablissement (finess, nom, ville) VALUES ('370000182', 'CHU Saint-Jacques', 'Tours');
INSERT INTO unite_fonctionnelle (code, libelle, etablissement_id) VALUES
  ('URG', 'Urgences', 1), ('CARDIO', 'Cardiologie', 1), ('PNEUMO', 'Pneumologie', 1);
UPDATE unite_fonctionnelle SET parent_id = 1 WHERE code = 'CARDIO';
INSERT INTO unite_mesure (code, libelle) VALUES ('mg', 'milligramme'), ('mL', 'millilitre'), ('UI', 'unité'),
  ('g/L', 'gramme par litre');
INSERT INTO profil (code, libelle, uf_autorisees) VALUES
  ('MED', 'Médecin', 'URG;CARDIO'), ('IDE', 'Infirmier', 'PNEUMO'), ('INTERNE', 'Interne', '');
INSERT INTO droit (code, libelle, domaine) VALUES ('PRESC_MED', 'Prescrire', 'PRESCRIPTION'),
  ('DOS_LECTURE', 'Consulter', 'DOSSIER');
INSERT INTO profil_droit (profil_id, droit_id) VALUES (1, 1), (1, 2), (2, 2);
INSERT INTO medicament (code_ucd, libelle, code_atc, forme, unite_id) VALUES
  ('3400890000017', 'PARACETAMOL 500 mg cp', 'N02BE01', 'CPR', 1),
  ('3400890000024', 'AMOXICILLINE 1 g cp', 'J01CA04', 'CPR', 1),
  ('3400890000031', 'HEPARINE 5000 UI inj', 'B01AB01', 'INJ', 3);
INSERT INTO protocole (code, libelle, service_code) VALUES ('PROT-DOULEUR', 'Douleur', 'URG'),
  ('PROT-PNEUMO', 'Pneumopathie', 'PNEUMO');
INSERT INTO ligne_protocole (protocole_id, rang, medicament_id, dose, unite_id, frequence) VALUES
  (1, 1, 1, 1000, 1, '4/j'), (2, 1, 2, 1000, 1, '3/j'), (2, 2, 3, 5000, 3, '2/j');
INSERT INTO regle_alerte_dose (medicament_id, population, dose_min, dose_max, unite_id) VALUES
  (1, 'ADULTE', 500, 4000, 1), (1, 'PEDIATRIE', 10, 60, 1), (2, 'ADULTE', 500, 6000, 1),
  (3, 'ADULTE', 2500, 20000, 3);
INSERT INTO examen_labo (code, libelle, tube, unite_code) VALUES ('718-7', 'Hémoglobine', 'EDTA', 'g/L'),
  ('2951-2', 'Sodium', 'Hépariné', NULL);
INSERT INTO formulaire (code, libelle) VALUES ('ENTREE', 'Entrée');
INSERT INTO champ_formulaire (formulaire_id, code, libelle, type_champ, ordre) VALUES
  (1, 'POIDS', 'Poids', 'NOMBRE', 1), (1, 'MOTIF', 'Motif', 'TEXTE', 2);
INSERT INTO parametre_global (cle, valeur) VALUES ('SESSION_TIMEOUT', '30'), ('LANGUE', 'fr');
"""


def demo_catalog(*, frozen: tuple[str, ...] = ()) -> CatalogConfig:
    """The demo configuration's catalog, with ``frozen`` tables marked ``frozen: true``."""
    catalog = load_config(CONFIG, environ={"GARDIEN_PG_DSN": pg.DEFAULT_ADMIN_DSN}).catalog
    if not frozen:
        return catalog
    raw = catalog.model_dump(by_alias=True)
    for table in raw["tables"]:
        table["frozen"] = table["name"] in frozen
    return CatalogConfig.model_validate(raw)


def demo_settings(**overrides: object) -> ValidationSettings:
    raw = load_config(CONFIG, environ={"GARDIEN_PG_DSN": pg.DEFAULT_ADMIN_DSN}).validation or {}
    return parse_validation_settings({**raw, **overrides}, base_dir=CONFIG.parent)


def execute(dsn: str, statement: str) -> None:
    """Run SQL on ``dsn`` and commit."""
    conn = pg.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def as_uri(dsn: str) -> str:
    """A libpq URI for ``dsn`` (the CLI takes environment names or URIs)."""
    import psycopg2.extensions

    p = psycopg2.extensions.parse_dsn(dsn)
    auth = p.get("user", "") + (":" + p["password"] if p.get("password") else "")
    return f"postgresql://{auth}@{p.get('host', '127.0.0.1')}:{p.get('port', '5432')}/{p['dbname']}"


def scalar(dsn: str, query: str) -> object:
    """The first column of the first row of ``query`` on ``dsn``."""
    conn = pg.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            row = cur.fetchone()
            return None if row is None else row[0]
    finally:
        conn.rollback()
        conn.close()


def seeded(dsn: str) -> str:
    """Create the demo schema in ``dsn`` with the clean seed rows; return ``dsn``."""
    execute(dsn, SCHEMA_SQL.read_text(encoding="utf-8") + SEED_SQL)
    return dsn
