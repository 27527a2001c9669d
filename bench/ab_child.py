"""One apply then rollback, timed, with whichever ``gardien`` PYTHONPATH gives (for bench/ab.py)."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta


def main() -> int:
    config, target, path, when = sys.argv[1:5]
    from gardien.apply import deploy
    from gardien.changeset import Changeset
    from gardien.config import load_config
    from gardien.rollback import rollback

    catalog = load_config(config).catalog
    changeset = Changeset.from_json(open(path, encoding="utf-8").read())
    at = datetime.fromisoformat(when)
    started = time.perf_counter()
    applied = deploy(target, changeset, catalog_config=catalog, target="bench", applied_at=at)
    apply_s = time.perf_counter() - started
    assert applied.status == "applied", applied.status
    started = time.perf_counter()
    undone = rollback(
        target,
        applied.deployment_id,
        catalog_config=catalog,
        target="bench",
        rolled_back_at=at + timedelta(seconds=1),
    )
    rollback_s = time.perf_counter() - started
    import gardien

    json.dump(
        {"apply_s": apply_s, "rollback_s": rollback_s, "proven": undone.proven, "package": gardien.__file__},
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
