"""Browser tier (``make test-ui``): a private Airflow stack and Debian's Chromium driven by Playwright.

Collected only when GARDIEN_UI_TESTS=1 (``make test-ui`` sets it; tests/conftest.py leaves this folder out
otherwise). Screenshots (1280×800) go to GARDIEN_UI_SCREENSHOTS, by default .gardien/ui-screenshots.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stack import ROOT, UiStack

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    for name in (os.environ.get("GARDIEN_CHROMIUM") or "", *CHROMIUM_CANDIDATES):
        found = shutil.which(name) if name else None
        if found:
            return found
    pytest.fail(
        "no Chromium found: install Debian's package (apt-get install -y chromium) or set GARDIEN_CHROMIUM"
    )


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(os.environ.get("GARDIEN_UI_SCREENSHOTS") or ROOT / ".gardien" / "ui-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def stack(pg_admin_dsn: str) -> Iterator[UiStack]:
    attach = os.environ.get("GARDIEN_UI_ATTACH")  # "port,prefix" of a stack kept up while writing tests
    if attach:
        port, prefix = attach.split(",")
        yield UiStack(admin_dsn=pg_admin_dsn, port=int(port), prefix=prefix)
        return
    ui = UiStack(admin_dsn=pg_admin_dsn)
    try:
        ui.start()
        ui.wait_for_dags("gardien_release_standard", "gardien_rollback")
        yield ui
    except Exception:
        print(ui.logs())
        raise
    finally:
        ui.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """On a failure, keep what each open browser page showed (screenshot and HTML) beside the screenshots."""
    report = yield
    if report.when == "call" and report.failed and "browser" in item.funcargs:
        folder = item.funcargs.get("screenshots") or Path(".")
        for i, context in enumerate(item.funcargs["browser"].contexts):
            for j, page in enumerate(context.pages):
                try:
                    page.screenshot(path=str(folder / f"failure-{i}-{j}.png"))
                    (folder / f"failure-{i}-{j}.html").write_text(page.content())
                except Exception:  # noqa: BLE001,S110 - best effort: the failure itself is reported
                    pass
    return report
