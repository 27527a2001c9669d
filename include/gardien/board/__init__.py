"""The release board: what a change advisory board sees, before and after it approves (pure: no Airflow).

Reads the ledger and the configuration, builds view models and renders them with Jinja2 (autoescape).
The Airflow adapter (gardien.airflow.board_app) mounts these pages in Airflow's API server behind its
auth manager; this package never imports Airflow and is tested alone.
"""

from __future__ import annotations

from gardien.board.render import STATIC_DIR, render
from gardien.board.settings import BoardSettings

__all__ = ["STATIC_DIR", "BoardSettings", "render"]
