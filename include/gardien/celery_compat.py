"""Put back ``celery.backends.database.retry`` (removed in celery 5.7) for the Celery provider 3.26.0.

The provider still imports it at module level, so without it every CeleryExecutor component (and the
workers' healthcheck, ``celery --app ... inspect ping``) fails at start. ``install`` patches now (the local
distributed launcher); ``install_on_import`` patches the module whenever a process imports it, at no cost to
processes that never do — the container image runs it from a ``.pth`` file, so every Python process there
(Airflow components, task processes, the healthcheck) gets it. A no-op on a celery that has ``retry``; it can
go once requirements.lock pins a celery the provider supports.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

MODULE = "celery.backends.database"


def add_retry(backend: ModuleType) -> None:
    """The decorator celery up to 5.6 shipped: up to three attempts on the backend's retryable errors."""
    if hasattr(backend, "retry"):
        return

    def retry(fun: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fun)
        def attempt(*args: Any, **kwargs: Any) -> Any:
            tries = kwargs.pop("max_retries", 3)
            for n in range(tries):
                try:
                    return fun(*args, **kwargs)
                except backend.RETRYABLE_DB_ERRORS:
                    if n + 1 >= tries:
                        raise
            return None

        return attempt

    backend.retry = retry


def install() -> None:
    import celery.backends.database as backend

    add_retry(backend)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the real loader of ``MODULE`` so that the module is patched once loaded."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        load = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            load(module)
            add_retry(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install_on_import() -> None:
    """Patch ``MODULE`` when (if ever) it is imported; immediately if it already is."""
    if MODULE in sys.modules:
        add_retry(sys.modules[MODULE])
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
