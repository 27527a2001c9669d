"""A small client of Airflow's public REST API (v2), used by the demo and the CLI — plain HTTP, no Airflow import."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gardien.errors import AuthenticationError, EnvironmentUnavailableError, GardienError

# Airflow 3.3.2 can lose an answer that lands while the task is still pausing into awaiting_input (the task
# is then retried and asks again). An answer is sent only once the Required Action is this old.
SETTLE_SECONDS = 3.0

# A task in one of these states no longer waits for its Required Action's answer.
ENDED_TASK_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


def seconds_until_settled(detail: dict[str, Any], *, settle: float = SETTLE_SECONDS) -> float:
    """How long to wait before answering the Required Action ``detail`` (0: now is fine)."""
    created = detail.get("created_at")
    if not created:
        return 0.0
    age = (datetime.now(UTC) - datetime.fromisoformat(str(created).replace("Z", "+00:00"))).total_seconds()
    return max(0.0, min(settle, settle - age))


def wait_until_settled(detail: dict[str, Any], *, settle: float = SETTLE_SECONDS) -> None:
    delay = seconds_until_settled(detail, settle=settle)
    if delay:
        time.sleep(delay)


class AirflowAPIError(GardienError):
    """The Airflow API answered with an error status."""

    def __init__(self, message: str, *, status: int, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


@dataclass(slots=True)
class AirflowAPI:
    """Airflow REST API with one user's own credentials (token obtained from /auth/token)."""

    base_url: str
    username: str
    password: str = field(repr=False)
    timeout: float = 15.0
    _token: str | None = field(default=None, repr=False)

    def _request(self, method: str, path: str, body: dict | None = None, *, auth: bool = True) -> Any:
        url = self.base_url.rstrip("/") + path
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - URL built from config
        req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                raw = resp.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                detail = json.loads(raw).get("detail")
            except (ValueError, AttributeError):
                detail = raw.decode(errors="replace")[:300]
            raise AirflowAPIError(
                f"Airflow API {method} {path} answered {exc.code}: {detail}", status=exc.code, detail=detail
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise EnvironmentUnavailableError(
                f"cannot reach the Airflow API at {self.base_url}: {exc}. Is Airflow running (make demo)?"
            ) from exc

    def token(self) -> str:
        if self._token is None:
            try:
                res = self._request(
                    "POST", "/auth/token", {"username": self.username, "password": self.password}, auth=False
                )
            except AirflowAPIError as exc:
                if exc.status in (401, 403):
                    raise AuthenticationError(
                        f"authentication failed: Airflow refused the credentials of user {self.username!r}; "
                        "check the user name and password. Nothing was answered."
                    ) from exc
                raise
            self._token = res["access_token"]
        return self._token

    # --- DAGs and runs -------------------------------------------------------------------------------
    def dag(self, dag_id: str) -> dict:
        return self._request("GET", f"/api/v2/dags/{_q(dag_id)}")

    def set_paused(self, dag_id: str, paused: bool) -> dict:
        return self._request("PATCH", f"/api/v2/dags/{_q(dag_id)}", {"is_paused": paused})

    def trigger(
        self,
        dag_id: str,
        *,
        conf: dict | None = None,
        run_id: str | None = None,
        note: str | None = None,
        logical_date: str | None = None,
    ) -> dict:
        """Trigger a run; a ``logical_date`` (ISO) gives the run a data interval from the DAG's timetable."""
        body: dict[str, Any] = {"logical_date": logical_date, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        if note:
            body["note"] = note
        return self._request("POST", f"/api/v2/dags/{_q(dag_id)}/dagRuns", body)

    def run(self, dag_id: str, run_id: str) -> dict:
        return self._request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")

    def runs(self, dag_id: str, *, limit: int = 20) -> list[dict]:
        res = self._request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns?order_by=-run_after&limit={limit}")
        return list(res.get("dag_runs", []))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        res = self._request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances?limit=200")
        return list(res.get("task_instances", []))

    def import_errors(self) -> list[dict]:
        return list(self._request("GET", "/api/v2/importErrors").get("import_errors", []))

    # --- Human-in-the-loop (Required Actions) --------------------------------------------------------
    def pending_actions(self, dag_id: str = "~", run_id: str = "~") -> list[dict]:
        """Required Actions still waiting for an answer.

        Airflow 3.3 keeps listing a request whose task already ended unanswered (a seat withdrawn when another
        rejected the release, a timed-out seat): its answer would count for nothing, so it is left out.
        """
        res = self._request(
            "GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/hitlDetails?response_received=false"
        )
        return [
            d
            for d in res.get("hitl_details", [])
            if (d.get("task_instance") or {}).get("state") not in ENDED_TASK_STATES
        ]

    def answer(
        self,
        *,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: int = -1,
        option: str,
        params_input: dict | None = None,
    ) -> dict:
        path = f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}/{map_index}/hitlDetails"
        return self._request("PATCH", path, {"chosen_options": [option], "params_input": params_input or {}})


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="~")
