"""Required Actions whose task already ended (a seat withdrawn by a rejection, a timed-out seat) are not offered
to the CLI or the demo as pending: Airflow 3.3 still lists them, and an answer to them would count for nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from gardien.restapi import AirflowAPI


def _detail(task_id: str, state: str | None) -> dict:
    return {"task_instance": {"task_id": task_id, "state": state}, "subject": f"Release R-1: {task_id}"}


DETAILS = [
    _detail("approve_pharmaciens", "awaiting_input"),
    _detail("approve_securite", "deferred"),
    _detail("approve_cab_1", "skipped"),  # withdrawn when the release was rejected
    _detail("approve_cab_2", "failed"),  # timed out
    _detail("approve_x", None),
]


class _Airflow(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # /auth/token
        self._json(201, {"access_token": "t"})

    def do_GET(self) -> None:
        assert "hitlDetails?response_received=false" in self.path
        self._json(200, {"hitl_details": DETAILS, "total_entries": len(DETAILS)})

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def airflow_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Airflow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_requests_of_ended_tasks_are_not_pending(airflow_url: str) -> None:
    api = AirflowAPI(airflow_url, "pharma.chef", "pw")
    waiting = [d["task_instance"]["task_id"] for d in api.pending_actions("gardien_release_standard", "R-1")]
    assert waiting == ["approve_pharmaciens", "approve_securite", "approve_x"]
