"""Fixtures of the distributed tier (distributed_support), and keeping it out of runs that did not ask for it.

The tier starts a CeleryExecutor Airflow and takes well over ten minutes on a small machine, so a plain
``pytest`` (``make test``) leaves it out; ``make test-distributed`` (``-m distributed``) or naming
tests/distributed on the command line selects it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from distributed_support import distributed  # noqa: F401 - a session fixture, found by pytest here

HERE = Path(__file__).resolve().parent


def _asked_for(config: pytest.Config) -> bool:
    if "distributed" in (config.option.markexpr or ""):
        return True
    return any(
        HERE in Path(arg.split("::")[0]).resolve().parents or Path(arg.split("::")[0]).resolve() == HERE
        for arg in config.args
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _asked_for(config):
        return
    mine = [item for item in items if item.get_closest_marker("distributed")]
    if mine:
        config.hook.pytest_deselected(items=mine)
        items[:] = [item for item in items if not item.get_closest_marker("distributed")]
