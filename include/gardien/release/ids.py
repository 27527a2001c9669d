"""Release ids: ``R-<path>-<YYYYMMDD-HHMM of the window, UTC>-<6 hex>``, also the Airflow run id of the release."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from urllib.parse import quote

BOARD_PREFIX = "/gardien"  # where Airflow's API server mounts the release board (Gardien's FastAPI app)

_RELEASE_ID = re.compile(r"^R-(?P<path>[a-z][a-z0-9_]{0,40})-\d{8}-\d{4}-[0-9a-f]{6}$")


def new_release_id(*, path_name: str, anchor: datetime, seed: str) -> str:
    """The id of a release of ``path_name`` whose window starts at ``anchor`` (the request time when there is
    no window); ``seed`` (e.g. the run type and the trigger instant) tells two requests of one window apart.

    Deterministic: the same inputs give the same id, so a scheduled window always gets the same run id.
    """
    digest = hashlib.sha256(f"{path_name}|{seed}".encode()).hexdigest()[:6]
    return f"R-{path_name}-{anchor.astimezone(UTC):%Y%m%d-%H%M}-{digest}"


def is_release_id(text: str | None, *, path_name: str) -> bool:
    """True when ``text`` is a release id of ``path_name`` (e.g. a run id made by the release timetable)."""
    match = _RELEASE_ID.match(text or "")
    return match is not None and match["path"] == path_name


def release_page(release_id: str) -> str:
    """The board's page of a release, relative to Airflow's base URL (run notes, logs and the demo link it)."""
    return f"{BOARD_PREFIX}/releases/{quote(release_id, safe='')}"
