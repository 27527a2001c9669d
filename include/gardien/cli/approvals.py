"""``gardien approve`` / ``gardien reject``: answer a release's pending Required Action with your own credentials."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from gardien.errors import ApprovalError, AuthenticationError, GardienError, UsageError
from gardien.restapi import AirflowAPI, AirflowAPIError

APPROVE = "Approve"
REJECT = "Reject"


@dataclass(frozen=True, slots=True)
class Answered:
    """What the API recorded: who answered which seat of which run, on which changeset."""

    user: str
    option: str
    dag_id: str
    run_id: str
    task_id: str
    changeset_id: str
    reason: str


def register(app: typer.Typer) -> None:
    """Add the ``approve`` and ``reject`` commands to the ``gardien`` app."""
    app.command("approve")(approve)
    app.command("reject")(reject)


_Release = Annotated[str, typer.Argument(help="Release reference or Airflow run id.")]
_Dag = Annotated[str | None, typer.Option("--dag", help="DAG id (default: any DAG).")]
_Api = Annotated[
    str, typer.Option("--api", envvar="GARDIEN_AIRFLOW_API", help="Airflow API server base URL.")
]
_User = Annotated[
    str | None,
    typer.Option("--user", envvar="GARDIEN_AIRFLOW_USER", help="Your Airflow user (default: login)."),
]
_PasswordEnv = Annotated[
    str, typer.Option("--password-env", help="Environment variable holding your password (else prompted).")
]
MIN_CHANGESET_PREFIX = 12  # the short id shown in Slack, the subject, the report and the UI

_Changeset = Annotated[
    str | None,
    typer.Option(
        "--changeset",
        help="Changeset id you reviewed (the 12-character id shown everywhere, or more); refused if the "
        "release changed.",
    ),
]


def approve(
    release: _Release,
    dag: _Dag = None,
    api: _Api = "http://localhost:8080",
    user: _User = None,
    password_env: _PasswordEnv = "GARDIEN_AIRFLOW_PASSWORD",
    changeset: _Changeset = None,
) -> None:
    """Approve the pending approval of RELEASE that is assigned to you."""
    client = _client(api, user, password_env)
    done = answer_release(client, release=release, dag_id=dag, option=APPROVE, changeset=changeset)
    typer.echo(_describe(done))


def reject(
    release: _Release,
    reason: Annotated[str, typer.Option("--reason", help="Why the release is rejected (recorded).")],
    dag: _Dag = None,
    api: _Api = "http://localhost:8080",
    user: _User = None,
    password_env: _PasswordEnv = "GARDIEN_AIRFLOW_PASSWORD",
    changeset: _Changeset = None,
) -> None:
    """Reject RELEASE with a reason; the release ends and the reason is recorded."""
    if not reason.strip():
        raise UsageError("--reason is empty; say why the release is rejected, it is recorded")
    client = _client(api, user, password_env)
    done = answer_release(
        client, release=release, dag_id=dag, option=REJECT, reason=reason, changeset=changeset
    )
    typer.echo(_describe(done))


def _client(api: str, user: str | None, password_env: str) -> AirflowAPI:
    username = user or getpass.getuser()
    password = os.environ.get(password_env)
    if password is None:
        password = typer.prompt(f"Airflow password for {username}", hide_input=True)
    return AirflowAPI(base_url=api, username=username, password=password)


def answer_release(
    api: AirflowAPI,
    *,
    release: str,
    dag_id: str | None,
    option: str,
    reason: str = "",
    changeset: str | None = None,
) -> Answered:
    """Answer the pending approval of `release` (a run id, or the release named in the subject) as `api`'s user.

    The server enforces who may answer (403 for a requester or a non-assigned user); the operator checks
    the changeset hash again when it resumes. Raises ApprovalError with the reason of any refusal.
    """
    if changeset is not None and len(changeset.strip()) < MIN_CHANGESET_PREFIX:
        raise UsageError(
            f"--changeset {changeset!r} is too short: give at least {MIN_CHANGESET_PREFIX} characters of the "
            "changeset id you reviewed (the id shown in the request, the report and Slack). Nothing was answered."
        )
    pending = _pending_for(api, release=release, dag_id=dag_id)
    mine = [d for d in pending if _assigned(d, api.username)]
    # Not assigned anywhere: answer anyway so the server refuses and records the attempt (403).
    candidates = mine or pending
    detail = candidates[0]
    if changeset is not None:
        detail = _reviewed(candidates, changeset=changeset.strip(), release=release)
    ti = detail["task_instance"]
    shown = _shown_changeset(detail)
    # Answered as soon as asked: Gardien records the answer when Airflow accepts it, and a seat retried
    # after Airflow 3.3.2's pause race resumes from it (no settle delay needed).
    try:
        res = api.answer(
            dag_id=ti["dag_id"],
            run_id=ti["dag_run_id"],
            task_id=ti["task_id"],
            map_index=ti.get("map_index", -1),
            option=option,
            params_input={"changeset_id": shown, "reason": reason},
        )
    except AirflowAPIError as exc:
        raise _refusal(exc, api.username, release, detail) from exc
    return Answered(
        user=str((res.get("responded_by") or {}).get("id") or api.username),
        option=option,
        dag_id=ti["dag_id"],
        run_id=ti["dag_run_id"],
        task_id=ti["task_id"],
        changeset_id=shown,
        reason=reason,
    )


def _shown_changeset(detail: dict[str, Any]) -> str:
    return str(((detail.get("params") or {}).get("changeset_id") or {}).get("value") or "")


def _reviewed(candidates: list[dict[str, Any]], *, changeset: str, release: str) -> dict[str, Any]:
    """The pending approval whose changeset id starts with ``changeset`` (a prefix of at least 12 characters).

    UsageError when the prefix names two different changesets; ApprovalError when the release now asks
    approval for another changeset than the one reviewed.
    """
    matching = [d for d in candidates if _shown_changeset(d).startswith(changeset)]
    ids = sorted({_shown_changeset(d) for d in matching})
    if len(ids) > 1:
        raise UsageError(
            f"--changeset {changeset} is ambiguous: it starts {len(ids)} changeset ids pending for {release} "
            f"({', '.join(i[:16] + '…' for i in ids)}); give more characters. Nothing was answered."
        )
    if not matching:
        shown = sorted({_shown_changeset(d)[:12] for d in candidates})
        raise ApprovalError(
            f"you reviewed changeset {changeset[:12]} but release {release} now asks approval for "
            f"{', '.join(shown)}; review the new changeset before answering"
        )
    return matching[0]


def _pending_for(api: AirflowAPI, *, release: str, dag_id: str | None) -> list[dict[str, Any]]:
    dag = dag_id or "~"
    try:
        pending = api.pending_actions(dag, release)
        if not pending:  # not a run id: the release reference is in the subject ("Release R-42: ...")
            pending = [
                d for d in api.pending_actions(dag, "~") if f"Release {release}:" in d.get("subject", "")
            ]
    except AirflowAPIError as exc:
        raise _refusal(exc, api.username, release, None) from exc
    if not pending:
        raise ApprovalError(
            f"no pending approval for {release!r}{f' in DAG {dag_id}' if dag_id else ''}: unknown release or run, "
            "or every approval was already answered or withdrawn (the release ended); check the run id in the Airflow UI (Required Actions)"
        )
    return sorted(pending, key=lambda d: d["task_instance"]["task_id"])


def _assigned(detail: dict[str, Any], user: str) -> bool:
    users = detail.get("assigned_users") or []
    return not users or any(u.get("id") == user for u in users)


def _refusal(exc: AirflowAPIError, user: str, release: str, detail: dict[str, Any] | None) -> GardienError:
    assigned = ", ".join(u["id"] for u in (detail or {}).get("assigned_users") or []) or "anyone allowed"
    if exc.status == 401:
        return AuthenticationError(
            f"authentication failed: Airflow refused the credentials of {user}; check --user and the password. "
            f"Nothing was answered for {release} (server: {exc.detail})"
        )
    messages = {
        403: f"{user} may not answer this approval of {release} (the requester never approves, and only "
        f"assigned users may: {assigned})",
        404: f"unknown release or run {release!r}: Airflow has no such DAG run or approval task",
        409: f"the approval of {release} was already answered; see the run in the Airflow UI",
        400: f"Airflow refused the answer for {release}",
    }
    text = messages.get(exc.status, f"Airflow answered {exc.status} for {release}")
    return ApprovalError(f"{text} (server: {exc.detail})")


def _describe(done: Answered) -> str:
    verb = "approved" if done.option == APPROVE else "rejected"
    why = f"; reason: {done.reason}" if done.reason else ""
    return (
        f"{done.user} {verb} {done.dag_id}/{done.run_id} task {done.task_id} "
        f"(changeset {done.changeset_id[:12] or '?'}){why}"
    )
