"""The release board inside Airflow's API server: every page behind Airflow's login and DAG permissions.

The real core API (with the Gardien plugin mounted at /gardien) serves the pages over HTTP; users get their
JWT from Airflow's own auth manager, as the UI's cookie carries it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from gardien import ledger, pg
from gardien.airflow import board_app
from gardien.board import BoardSettings
from gardien.config import load_config
from gardien.demo.ledger_sample import record_sample_release

pytestmark = [pytest.mark.dag, pytest.mark.integration]
CONFIG = Path(__file__).resolve().parents[2] / "include" / "config" / "gardien.yaml"
EVIL = "<script>alert('label')</script>"
PAGES = [
    "/gardien/",
    "/gardien/calendar",
    "/gardien/calendar.ics",
    "/gardien/releases/R-sec-1",
    "/gardien/releases/R-sec-1/review?seat=pharmaciens",
    "/gardien/static/board.css",
]


@pytest.fixture(scope="module")
def board_ledger(pg_admin_dsn: str, airflow_db: Path) -> Iterator[str]:
    name = f"gt_boardsec_{uuid.uuid4().hex[:10]}"
    dsn = pg.create_database(pg_admin_dsn, name)
    conn = pg.connect(dsn)
    ledger.ensure_schema(conn)
    record_sample_release(
        conn, release_id="R-sec-1", at=datetime(2026, 12, 1, 19, tzinfo=UTC), drug_label=EVIL, comment=EVIL
    )
    conn.commit()
    conn.close()
    settings = replace(BoardSettings.from_config(load_config(CONFIG)), ledger_dsn=dsn)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(board_app, "settings", lambda: settings)
        yield dsn
    pg.drop_database(pg_admin_dsn, name)


def token(username: str, role: str | None) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))


def get(api_url: str, path: str, *, cookie: str | None = None, bearer: str | None = None) -> httpx.Response:
    cookies = {"_token": cookie} if cookie else None
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
    return httpx.get(api_url + path, cookies=cookies, headers=headers, timeout=30)


@pytest.mark.parametrize("path", PAGES)
def test_board_unauthenticated_is_refused(api_url: str, board_ledger: str, path: str) -> None:
    response = get(api_url, path)
    assert response.status_code == 401
    assert "R-sec-1" not in response.text and "alert(" not in response.text


@pytest.mark.parametrize("path", PAGES)
def test_board_forged_token_is_refused(api_url: str, board_ledger: str, path: str) -> None:
    assert get(api_url, path, cookie="eyJhbGciOiJIUzUxMiJ9.e30.forged").status_code in (401, 403)


@pytest.mark.parametrize("path", PAGES)
def test_board_user_without_dag_access_is_refused(api_url: str, board_ledger: str, path: str) -> None:
    response = get(api_url, path, cookie=token("nobody", None))  # signed in, but no role grants DAG access
    assert response.status_code == 403
    assert "R-sec-1" not in response.text


@pytest.mark.parametrize("path", PAGES)
def test_board_reader_sees_every_page_escaped_without_secrets(
    api_url: str, board_ledger: str, path: str
) -> None:
    response = get(api_url, path, cookie=token("auditeur", "viewer"))
    assert response.status_code == 200, response.text[:500]
    assert "<script>" not in response.text
    assert board_ledger not in response.text and "postgresql://" not in response.text


def test_board_bearer_token_works_like_the_cookie(api_url: str, board_ledger: str) -> None:
    assert get(api_url, "/gardien/", bearer=token("auditeur", "viewer")).status_code == 200


def test_board_rollback_button_only_with_trigger_right(api_url: str, board_ledger: str) -> None:
    viewer = get(api_url, "/gardien/releases/R-sec-1", cookie=token("auditeur", "viewer")).text
    user = get(api_url, "/gardien/releases/R-sec-1", cookie=token("chef.projet", "user")).text
    assert "&lt;script&gt;alert(" in viewer
    assert '<form method="post"' not in viewer and "needs the right to trigger" in viewer
    assert '<form method="post"' in user and "Roll back R-sec-1 on prod" in user
    form = {"environment": "prod", "reason": "a reason long enough"}
    refused = httpx.post(
        api_url + "/gardien/releases/R-sec-1/rollback",
        data=form,
        cookies={"_token": token("auditeur", "viewer")},
        headers={"Origin": api_url},
        timeout=30,
    )
    assert refused.status_code == 403


def test_board_cross_site_rollback_post_is_refused(api_url: str, board_ledger: str) -> None:
    response = httpx.post(
        api_url + "/gardien/releases/R-sec-1/rollback",
        data={"environment": "prod", "reason": "a reason long enough"},
        cookies={"_token": token("chef.projet", "user")},
        headers={"Origin": "https://evil.example"},
        timeout=30,
    )
    assert response.status_code == 403 and "cross-site" in response.text


def test_plugin_adds_the_releases_nav_entry(api_url: str) -> None:
    response = get(api_url, "/api/v2/plugins", bearer=token("admin", "admin"))
    plugin = next(p for p in response.json()["plugins"] if p["name"] == "gardien")
    assert plugin["external_views"][0]["name"] == "Releases"
    assert plugin["external_views"][0]["href"] == "/gardien/"


def test_board_ledger_down_says_so_without_its_dsn(
    api_url: str, board_ledger: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = f"postgresql://gardien:s3cret@127.0.0.1:{port}/gardien_ledger_secret_name"
    settings = replace(board_app.settings(), ledger_dsn=down)
    monkeypatch.setattr(board_app, "settings", lambda: settings)
    response = get(api_url, "/gardien/", cookie=token("auditeur", "viewer"))
    assert response.status_code == 503 and "Ledger unavailable" in response.text
    assert "s3cret" not in response.text and "gardien_ledger_secret_name" not in response.text
    assert str(port) not in response.text
