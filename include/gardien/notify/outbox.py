"""An append-only JSONL outbox of undelivered notifications, safe for concurrent senders."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from gardien.notify.base import FlushResult, SendResult
from gardien.notify.blocks import SlackMessage

log = logging.getLogger("gardien.notify")
RECORD_VERSION = 1


class Outbox:
    """Undelivered messages, one JSON object per line.

    Appends and rewrites take an exclusive lock on a sidecar ``.lock`` file, so parallel Airflow
    tasks can queue while a flush runs; the lock is never held during network I/O. Delivery is
    at-least-once: a crash during a flush can resend a message, never lose one.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._flush_lock_path = self.path.with_name(self.path.name + ".flush.lock")

    def append(self, message: SlackMessage, *, channel: str, error: str | None) -> None:
        """Queue ``message``; raises OSError if the file cannot be written (the caller logs it)."""
        record = {"v": RECORD_VERSION, "channel": channel, "error": error, **message.payload()}
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
        with self._locked(self._lock_path, blocking=True):
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())

    def pending(self) -> list[str]:
        """The queued records (raw lines), oldest first."""
        with self._locked(self._lock_path, blocking=True):
            return self._read()

    def drain(self, deliver: Callable[[SlackMessage], SendResult]) -> FlushResult:
        """Resend queued messages oldest first, stopping at the first failure; keep what failed.

        Returns at once with nothing delivered if another flush is running.
        """
        with self._locked(self._flush_lock_path, blocking=False) as acquired:
            if not acquired:
                log.info("another flush of %s is running; skipped", self.path)
                return FlushResult(delivered=0, remaining=len(self.pending()))
            lines = self.pending()
            keep: list[str] = []
            delivered = 0
            stopped = False
            for line in lines:
                if stopped:
                    keep.append(line)
                    continue
                try:
                    message = SlackMessage.from_payload(json.loads(line))
                except (ValueError, TypeError, AttributeError):
                    # Kept, not dropped: an operator can still read and repair it.
                    log.error("unreadable outbox record kept in %s: %.200s", self.path, line)
                    keep.append(line)
                    continue
                if deliver(message).ok:
                    delivered += 1
                else:
                    # Slack still failing: the rest would fail too and cost a budget each.
                    keep.append(line)
                    stopped = True
            with self._locked(self._lock_path, blocking=True):
                # Records appended while we were sending follow the ones we read.
                current = self._read()
                self._rewrite(keep + current[len(lines) :])
            return FlushResult(delivered=delivered, remaining=len(keep) + len(current) - len(lines))

    def _read(self) -> list[str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()]

    def _rewrite(self, lines: list[str]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            fh.writelines(line + "\n" for line in lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _locked(self, lock_path: Path, *, blocking: bool) -> Iterator[bool]:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as fh:
            flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
            try:
                fcntl.flock(fh.fileno(), flags)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
