"""The celery 5.7 shim: patched when the module is imported (as every process in the image does), or now."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = "import celery.backends.database as b; print(hasattr(b, 'retry'))"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("", None),  # this celery lacks it (else the shim is no longer needed: the test says so)
        ("import gardien.celery_compat as c; c.install_on_import(); ", "True"),
        (
            "import celery.backends.database; import gardien.celery_compat as c; c.install_on_import(); ",
            "True",
        ),
    ],
    ids=["without-shim", "hook-before-import", "already-imported"],
)
def test_retry_is_there_once_the_hook_is_installed(setup: str, expected: str | None) -> None:
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-c", setup + PROBE], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()
    if expected is None:
        if out == "True":
            pytest.skip("this celery has retry again: gardien.celery_compat can go")
        assert out == "False"
    else:
        assert out == expected


def test_provider_module_imports_with_the_hook() -> None:
    code = (
        "import gardien.celery_compat as c; c.install_on_import(); "
        "import airflow.providers.celery.executors.celery_executor_utils"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, capture_output=True)  # noqa: S603
