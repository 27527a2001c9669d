"""The release board inside Airflow: a FastAPI app mounted by the plugin at /gardien, behind Airflow's auth.

Plugin endpoints are public unless they ask for a user: every route here depends on ``board_viewer``, which
takes the user from the same JWT the UI uses (bearer header or the ``_token`` cookie), then asks the auth
manager for read access to the release DAGs (refused otherwise). The rollback action asks for the right to
trigger ``gardien_rollback`` and triggers it through Airflow's own REST API with the user's own token, so
Airflow validates the params and records who triggered it. Pages are rendered by gardien.board (no Airflow).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from gardien import pg
from gardien.board import STATIC_DIR, BoardSettings, pages, render
from gardien.board.settings import ROLLBACK_DAG
from gardien.board.views import AirflowFacts, SeatAnswer, Viewer, run_href
from gardien.errors import GardienError

log = logging.getLogger(__name__)
URL_PREFIX = "/gardien"
STATIC_FILES = {"board.css": "text/css"}


@cache
def settings() -> BoardSettings:
    """Read once per API-server process (plugins are loaded once too: a configuration change needs a restart)."""
    return BoardSettings.from_file()


@contextmanager
def ledger_conn() -> Iterator[Any]:
    """A read-only ledger transaction; the connection is closed whatever happens."""
    conn = pg.connect(settings().ledger_dsn, application_name="gardien board")
    try:
        conn.set_session(readonly=True)
        yield conn
    finally:
        conn.rollback()
        conn.close()


def _user_token(request: Request) -> str | None:
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:]
    return request.cookies.get(COOKIE_NAME_JWT_TOKEN)


async def _airflow_user(request: Request) -> Any:
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    header = request.headers.get("authorization", "")
    bearer = (
        HTTPAuthorizationCredentials(scheme="Bearer", credentials=header[7:])
        if header.lower().startswith("bearer ")
        else None
    )
    return await get_user(request, None, bearer)


async def board_viewer(request: Request) -> Viewer:
    """The signed-in user with read access to at least one release DAG; 401/403 otherwise."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    user = await _airflow_user(request)  # raises 401 (no/expired token) or 403 (invalid token)
    manager = get_auth_manager()
    readable = frozenset(
        dag_id
        for dag_id in settings().release_dag_ids
        if manager.is_authorized_dag(method="GET", user=user, details=DagDetails(id=dag_id))
    )
    if not readable:
        raise HTTPException(
            status_code=403, detail="reading the release board needs read access to the release DAGs"
        )
    can_rollback = manager.is_authorized_dag(
        method="POST", access_entity=DagAccessEntity.RUN, user=user, details=DagDetails(id=ROLLBACK_DAG)
    ) and manager.is_authorized_dag(method="GET", user=user, details=DagDetails(id=ROLLBACK_DAG))
    return Viewer(
        user_id=str(user.get_id()),
        name=str(user.get_name()),
        can_rollback=can_rollback,
        readable_dags=readable,
    )


ViewerDep = Annotated[Viewer, Depends(board_viewer)]


def airflow_facts(dag_id: str | None, run_id: str | None) -> AirflowFacts:
    """The run's state and its Required Actions (who answered, when, with which comment)."""
    if not dag_id or not run_id:
        return AirflowFacts()
    from airflow.models.dagrun import DagRun
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        state = session.scalar(select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        rows = session.execute(
            select(
                TaskInstance.task_id,
                TaskInstance.state,
                HITLDetail.subject,
                HITLDetail.responded_by,
                HITLDetail.responded_at,
                HITLDetail.chosen_options,
                HITLDetail.params_input,
            )
            .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
            .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
            .order_by(TaskInstance.task_id)
        ).all()
    answers = tuple(
        SeatAnswer(
            task_id=task_id,
            subject=subject,
            responded_by=(by or {}).get("id") if isinstance(by, dict) else None,
            responded_at=at,
            chosen=tuple(chosen or ()),
            comment=((params or {}).get("reason") or None) if isinstance(params, dict) else None,
            task_state=str(ti_state) if ti_state is not None else None,
        )
        for task_id, ti_state, subject, by, at, chosen, params in rows
    )
    return AirflowFacts(run_state=str(state) if state is not None else None, answers=answers)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _row_for(viewer: Viewer, release_id: str) -> Any:
    with ledger_conn() as conn:
        try:
            row = pages.release_row(conn, release_id)
        except pages.NotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
    if row.dag_id is not None and row.dag_id not in viewer.readable_dags:
        raise HTTPException(status_code=403, detail=f"reading this release needs read access to {row.dag_id}")
    return row


def _same_origin(request: Request) -> bool:
    """A cookie-authenticated POST must come from a page of this server (no cross-site form posts)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return bool(request.headers.get("authorization"))  # an API client with its own bearer token
    here = urlsplit(str(request.base_url))
    there = urlsplit(origin)
    return (there.scheme, there.netloc) == (here.scheme, here.netloc)


def trigger_rollback(*, token: str, release_id: str, environment: str, reason: str) -> str:
    """Trigger gardien_rollback through Airflow's REST API as the user; the new run id. GardienError if refused."""
    import httpx
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="http://127.0.0.1:8080").rstrip("/")
    body = {
        "logical_date": None,
        "conf": {"release": release_id, "environment": environment, "reason": reason},
    }
    try:
        response = httpx.post(
            f"{base}/api/v2/dags/{ROLLBACK_DAG}/dagRuns",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise GardienError(f"Airflow's API at {base} did not answer ({exc}); nothing was triggered") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:300]
        raise GardienError(f"Airflow refused to trigger {ROLLBACK_DAG} ({response.status_code}): {detail}")
    return str(response.json()["dag_run_id"])


def create_app() -> FastAPI:
    """The board's FastAPI app (no OpenAPI pages: every route needs a signed-in user)."""
    app = FastAPI(title="Gardien release board", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def _refused(request: Request, exc: HTTPException) -> HTMLResponse:
        login = None
        if exc.status_code == 401:
            login = f"/auth/login?next={URL_PREFIX}/"
        title = {401: "Sign in needed", 403: "Access refused", 404: "Not found"}.get(
            exc.status_code, "Refused"
        )
        html = render("refused.html", title=title, message=str(exc.detail), login=login)
        return HTMLResponse(html, status_code=exc.status_code)

    @app.exception_handler(GardienError)
    async def _unavailable(request: Request, exc: GardienError) -> HTMLResponse:
        # The message may name the ledger's host and database: it goes to the API server's log, not the page.
        log.error("gardien board: %s %s failed: %s", request.method, request.url.path, exc)
        html = render(
            "refused.html",
            title="Ledger unavailable",
            message="The board could not read the audit ledger, so it shows nothing rather than a partial "
            "page. The reason is in the Airflow API server's log; nothing was changed.",
            login=None,
        )
        return HTMLResponse(html, status_code=503)

    @app.get("/", response_class=HTMLResponse)
    def releases(
        viewer: ViewerDep,
        status: str | None = None,
        environment: str | None = None,
        q: str | None = None,
        page: int = 1,
    ) -> str:
        with ledger_conn() as conn:
            return pages.releases_html(
                conn,
                settings=settings(),
                viewer=viewer,
                root=URL_PREFIX,
                status=status,
                environment=environment,
                q=q,
                page=page,
            )

    @app.get("/calendar", response_class=HTMLResponse)
    def calendar(viewer: ViewerDep, month: str | None = None) -> str:
        with ledger_conn() as conn:
            return pages.calendar_html(
                conn, settings=settings(), viewer=viewer, root=URL_PREFIX, now=_now(), month=month
            )

    @app.get("/calendar.ics")
    def calendar_ics(viewer: ViewerDep) -> Response:
        try:
            body = pages.calendar_ics(settings(), now=_now())
        except pages.NotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return Response(
            body,
            media_type="text/calendar; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="gardien-windows.ics"'},
        )

    @app.get("/releases/{release_id}", response_class=HTMLResponse)
    def release(viewer: ViewerDep, release_id: str) -> str:
        row = _row_for(viewer, release_id)
        facts = airflow_facts(row.dag_id, row.run_id)
        with ledger_conn() as conn:
            return pages.release_html(
                conn, row=row, settings=settings(), viewer=viewer, facts=facts, root=URL_PREFIX, now=_now()
            )

    @app.get("/releases/{release_id}/review", response_class=HTMLResponse)
    def review(viewer: ViewerDep, release_id: str, seat: Annotated[str | None, Query()] = None) -> str:
        row = _row_for(viewer, release_id)
        facts = airflow_facts(row.dag_id, row.run_id)
        with ledger_conn() as conn:
            html = pages.review_html(
                conn,
                row=row,
                settings=settings(),
                viewer=viewer,
                facts=facts,
                root=URL_PREFIX,
                now=_now(),
                seat=seat,
            )
        if html is None:
            raise HTTPException(
                status_code=409,
                detail=f"release {release_id} has no validated changeset yet: the review opens once validation passed",
            )
        return html

    @app.post("/releases/{release_id}/rollback", response_class=HTMLResponse)
    def rollback(
        request: Request,
        viewer: ViewerDep,
        release_id: str,
        environment: Annotated[str, Form()],
        reason: Annotated[str, Form()],
    ) -> str:
        if not viewer.can_rollback:
            raise HTTPException(
                status_code=403, detail=f"rolling back needs the right to trigger {ROLLBACK_DAG}"
            )
        if not _same_origin(request):
            raise HTTPException(
                status_code=403, detail="cross-site request refused: use the button on the release page"
            )
        row = _row_for(viewer, release_id)
        if environment not in row.path:
            raise HTTPException(status_code=422, detail=f"{environment!r} is not on the path of {release_id}")
        token = _user_token(request)
        if not token:
            raise HTTPException(status_code=401, detail="sign in again: no token to act with")
        try:
            run_id = trigger_rollback(
                token=token, release_id=release_id, environment=environment, reason=reason.strip()
            )
        except GardienError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        return render(
            "started.html",
            page="release",
            root=URL_PREFIX,
            viewer=viewer,
            run_id=run_id,
            release_id=release_id,
            environment=environment,
            run_href=run_href(ROLLBACK_DAG, run_id),
        )

    @app.get("/static/{name}")
    def static(viewer: ViewerDep, name: str) -> FileResponse:
        if name not in STATIC_FILES:
            raise HTTPException(status_code=404, detail=f"no asset {name!r}")
        return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name])

    return app
