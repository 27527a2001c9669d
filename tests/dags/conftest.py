"""Airflow test tier: an isolated AIRFLOW_HOME with a migrated SQLite metadata DB, set before airflow loads.

Set up at import time (not in a fixture) because Airflow reads its configuration when first imported.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_HOME = Path(os.environ.get("GARDIEN_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="gardien-airflow-"))

os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "False"
os.environ.setdefault(
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
    "admin:admin,chef.projet:user,resp.exploitation:user,dsi.adjoint:user,pharma.chef:user,"
    "pharma.adjoint:user,rssi:user,parametreur:user,viewer:viewer",
)
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "gardien-test-secret")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the isolated metadata DB once per session; return AIRFLOW_HOME."""
    from airflow.utils import db

    db.resetdb()
    return _HOME
