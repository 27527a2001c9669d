"""A local fake of the Slack Web API (chat.postMessage, auth.test) on 127.0.0.1, with failure modes."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

MODES = ("normal", "down", "slow", "rate_limited", "server_error", "invalid_auth")


@dataclass(frozen=True, slots=True)
class Received:
    """One HTTP request the fake answered (or left hanging, in slow mode)."""

    method: str
    token: str | None
    params: Mapping[str, Any]
    status: int
    mode: str
    ok: bool = False  # whether Slack would have acted on it (posted the message, accepted the token)


@dataclass
class _State:
    mode: str = "normal"
    remaining: int | None = None  # requests left in the mode before falling back to normal
    retry_after: int = 1
    delay: float = 10.0
    received: list[Received] = field(default_factory=list)
    next_ts: int = 1


class FakeSlack:
    """A threaded HTTP server that answers like Slack's Web API; point ``base_url`` of slack-sdk at it.

    ``set_mode`` switches behaviour: ``normal``; ``down`` (the listening socket is closed, so
    connections are refused, until another mode restarts it on the same port); ``slow`` (answers after
    ``delay`` seconds); ``rate_limited`` (HTTP 429 with ``Retry-After``); ``server_error`` (HTTP 500);
    ``invalid_auth``. With ``times=N`` the mode lasts N requests, then the fake is normal again.
    """

    def __init__(self, *, token: str = "xoxb-fake-token") -> None:
        self.token = token
        self._state = _State()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeSlack:
        self._wake.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name="fake-slack", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._wake.set()  # release handlers sleeping in slow mode
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- behaviour ---------------------------------------------------------------------------
    def set_mode(
        self, mode: str, *, times: int | None = None, retry_after: int = 1, delay: float = 10.0
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        with self._lock:
            self._state.mode = mode
            self._state.remaining = times
            self._state.retry_after = retry_after
            self._state.delay = delay
        if mode == "down":
            self.stop()
        elif not self.running:
            self.start()

    @property
    def mode(self) -> str:
        return self._state.mode

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._state.received)

    def requests(self, method: str = "chat.postMessage") -> list[Received]:
        """Every request for ``method``, whatever its answer."""
        return [r for r in self.received if r.method == method]

    @property
    def messages(self) -> list[Mapping[str, Any]]:
        """The parameters of every chat.postMessage that Slack would have posted."""
        return [r.params for r in self.requests("chat.postMessage") if r.ok]

    def _take_mode(self) -> tuple[str, int, float]:
        with self._lock:
            s = self._state
            mode = s.mode
            if s.remaining is not None:
                s.remaining -= 1
                if s.remaining <= 0:
                    s.mode, s.remaining = "normal", None
            return mode, s.retry_after, s.delay

    def _record(self, received: Received) -> str:
        with self._lock:
            self._state.received.append(received)
            n = self._state.next_ts
            self._state.next_ts += 1
        return f"{1700000000 + n}.{n:06d}"

    def _answer(self, method: str, token: str | None, params: Mapping[str, Any], mode: str) -> dict[str, Any]:
        """The JSON body Slack would send with HTTP 200."""
        if mode == "invalid_auth":
            return {"ok": False, "error": "invalid_auth"}
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token != self.token:
            return {"ok": False, "error": "invalid_auth"}
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://gardien.slack.com/",
                "team": "Gardien",
                "user": "gardien",
                "team_id": "T0GARDIEN",
                "user_id": "U0GARDIEN",
                "bot_id": "B0GARDIEN",
            }
        if method == "chat.postMessage":
            if not params.get("channel"):
                return {"ok": False, "error": "channel_not_found"}
            if not params.get("text") and not params.get("blocks"):
                return {"ok": False, "error": "no_text"}
            blocks = params.get("blocks") or []
            if not isinstance(blocks, list) or not all(isinstance(b, dict) and "type" in b for b in blocks):
                return {"ok": False, "error": "invalid_blocks"}
            return {"ok": True, "channel": "C0GARDIEN"}
        return {"ok": False, "error": "unknown_method"}


def _handler_for(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — quiet test output
            return

        def do_POST(self) -> None:  # noqa: N802 — http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            params = _parse_body(raw, self.headers.get("Content-Type", ""))
            token = _bearer(self.headers.get("Authorization")) or params.pop("token", None)
            method = self.path.split("?", 1)[0].removeprefix("/api/").strip("/")
            mode, retry_after, delay = fake._take_mode()
            if mode == "slow":
                fake._record(Received(method, token, params, 200, mode))
                fake._wake.wait(delay)
                self._send(200, {"ok": True, "ts": "0.0"})
                return
            if mode == "rate_limited":
                fake._record(Received(method, token, params, 429, mode))
                self._send(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})
                return
            if mode == "server_error":
                fake._record(Received(method, token, params, 500, mode))
                self._send(500, None)
                return
            body = fake._answer(method, token, params, mode)
            ts = fake._record(Received(method, token, params, 200, mode, ok=body["ok"]))
            if body["ok"] and method == "chat.postMessage":
                body["ts"] = ts
            self._send(200, body)

        def _send(self, status: int, body: dict[str, Any] | None, headers: Mapping[str, str] = {}) -> None:  # noqa: B006
            data = b"Internal Server Error" if body is None else json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header(
                    "Content-Type", "text/plain" if body is None else "application/json; charset=utf-8"
                )
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (slow mode): nothing to answer

    return Handler


def _bearer(value: str | None) -> str | None:
    if value and value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return None


def _parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    text = raw.decode("utf-8", "replace")
    if "json" in content_type:
        parsed = json.loads(text or "{}")
        return dict(parsed) if isinstance(parsed, dict) else {}
    params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(text).items()}
    # Form posts carry blocks as a JSON string, as Slack accepts them.
    if isinstance(params.get("blocks"), str):
        try:
            params["blocks"] = json.loads(params["blocks"])
        except ValueError:
            pass
    return params
