"""The engine on the demo hospital schema and catalog, with a few rows: carry, re-apply, roll back."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_engine_support import NOW, execute

from gardien.apply import deploy
from gardien.config import load_config
from gardien.diff import diff
from gardien.rollback import rollback

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROWS = """
INSERT INTO etablissement (finess, nom, ville) VALUES ('690000001', 'CHU', 'Lyon');
INSERT INTO unite_mesure (code, libelle) VALUES ('mg', 'milligramme'), ('mL', 'millilitre');
INSERT INTO unite_fonctionnelle (code, libelle, etablissement_id) SELECT 'URG', 'Urgences', id FROM etablissement;
INSERT INTO unite_fonctionnelle (code, libelle, etablissement_id, parent_id)
  SELECT 'URG-PED', 'Urgences pédiatriques', e.id, u.id FROM etablissement e, unite_fonctionnelle u;
INSERT INTO medicament (code_ucd, libelle, code_atc, forme, unite_id)
  SELECT '3400892088310', 'Paracétamol 500 mg', 'N02BE01', 'comprimé', id FROM unite_mesure WHERE code = 'mg';
INSERT INTO profil (code, libelle, uf_autorisees) VALUES ('IDE', 'Infirmier', 'URG;URG-PED');
INSERT INTO droit (code, libelle, domaine) VALUES ('DOS_LIRE', 'Lire le dossier', 'DOSSIER');
INSERT INTO profil_droit (profil_id, droit_id) SELECT p.id, d.id FROM profil p, droit d;
INSERT INTO protocole (code, libelle, service_code) VALUES ('DOUL1', 'Douleur', 'URG');
INSERT INTO ligne_protocole (protocole_id, rang, medicament_id, dose, unite_id, frequence)
  SELECT p.id, 1, m.id, 500, u.id, '4/j' FROM protocole p, medicament m, unite_mesure u WHERE u.code = 'mg';
"""


def _rows(dsn):
    from test_engine_support import query

    return {
        t: query(dsn, f"SELECT * FROM {t} ORDER BY id")  # noqa: S608 - fixed table names
        for t in ("etablissement", "unite_fonctionnelle", "medicament", "profil_droit", "ligne_protocole")
    }


def test_demo_schema_carry_reapply_and_rollback(make_db):
    schema = (ROOT / "include" / "gardien" / "demo" / "schema.sql").read_text()
    source, target = make_db("demo_src"), make_db("demo_tgt")
    execute(source, schema)
    execute(target, schema)
    execute(target, "INSERT INTO unite_mesure (code, libelle) VALUES ('UI', 'unité'), ('mL', 'ml')")
    execute(source, SOURCE_ROWS)
    original = _rows(target)
    cfg = load_config(ROOT / "include" / "config" / "gardien.yaml", environ={"GARDIEN_PG_DSN": source})
    changeset = diff(source, target, catalog_config=cfg.catalog)
    assert changeset.counts()["ligne_protocole"] == {"inserts": 1, "updates": 0, "deletes": 0}
    assert changeset.for_table("ligne_protocole").inserts[0].key == (("DOUL1",), "1")
    result = deploy(target, changeset, catalog_config=cfg.catalog, target="prod", applied_at=NOW)
    assert result.matches_source and diff(source, target, catalog_config=cfg.catalog).is_empty
    again = deploy(target, changeset, catalog_config=cfg.catalog, target="prod", applied_at=NOW)
    assert again.status == "already_applied"
    proof = rollback(
        target, result.deployment_id, catalog_config=cfg.catalog, target="prod", rolled_back_at=NOW
    )
    assert proof.proven and _rows(target) == original
