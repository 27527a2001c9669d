"""What a release's artifact folder adds to the ledger (drift notes, Data Docs), read leniently."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Written next to the artifacts by write_report; never read back as an input.
OUTPUTS = ("report.json", "report.html")


@dataclass(frozen=True, slots=True)
class Artifacts:
    """Artifact files found for one release; empty when the folder is missing (e.g. an auditor's machine).

    ``deployments`` maps an environment to its ``deployment-<env>.json`` (an ApplyResult dict), and
    ``links`` maps a file name (``changeset.json``, or a path as recorded in a validation report) to an
    href relative to where the report is written, for files that exist.
    """

    folder: str | None = None
    files: tuple[str, ...] = ()
    deployments: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    links: Mapping[str, str] = field(default_factory=dict)
    unreadable: tuple[str, ...] = ()

    def link(self, recorded_path: str | None, *, release_id: str) -> str | None:
        """The href of a file recorded as ``recorded_path`` (possibly on another machine), if present here."""
        if not recorded_path:
            return None
        if recorded_path in self.links:
            return self.links[recorded_path]
        marker = f"/{release_id}/"
        if marker in recorded_path:
            return self.links.get(recorded_path.split(marker, 1)[1])
        return None


def read_artifacts(folder: Path | None, *, link_from: Path) -> Artifacts:
    """Index ``folder`` (None or missing: no artifacts). A damaged JSON file is listed, never fatal:
    the ledger, not the folder, is the record."""
    if folder is None or not folder.is_dir():
        return Artifacts()
    folder = folder.resolve()
    files = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).as_posix() not in OUTPUTS
    )
    deployments: dict[str, Mapping[str, Any]] = {}
    unreadable: list[str] = []
    for name in files:
        if name.startswith("deployment-") and name.endswith(".json") and "/" not in name:
            data = _read_json(folder / name)
            if isinstance(data, Mapping):
                deployments[name[len("deployment-") : -len(".json")]] = data
            else:
                unreadable.append(name)
    base = link_from.resolve()
    links = {
        name: Path(os.path.relpath(folder / name, base)).as_posix()
        for name in files
        if name == "changeset.json" or name.endswith("index.html")
    }
    return Artifacts(
        folder=str(folder),
        files=tuple(files),
        deployments=deployments,
        links=links,
        unreadable=tuple(unreadable),
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
