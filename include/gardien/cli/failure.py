"""What the ``gardien`` command says when it fails: an exit code from the README's table, one named cause,
whether anything was changed — as text on stderr, or under ``--json`` as one JSON document on stderr
(stdout keeps the command's own output):

    {"error": {"code": 5, "kind": "changeset", "message": "...", "details": ["...", ...]}}

``classify`` turns any exception into a ``Failure``; ``print_failure`` is the one printer (wrap it to
filter what is printed). Errors Gardien raises on purpose (gardien.errors) carry their own code and
words. Anything else is named by its type and the server's or system's first line, with the code of
what failed: a lost or refused connection is 4 ("unreachable", 11 for the ledger's commands); a database
refusal, a timeout or a defect takes the code of the command's own stage (diff 5, apply 9, rollback 10,
validate 7, ...), because that is what did not happen; a file the system refused is a usage error (2).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import psycopg2
import psycopg2.errors

from gardien import errors
from gardien.redact import redact_text


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed run: the exit code and what to print (``message`` empty: print nothing)."""

    code: int
    kind: str
    message: str
    details: tuple[str, ...] = ()
    show_usage: Callable[[], None] | None = None  # a usage error's own printer (text mode)

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "kind": self.kind,
                "message": self.message,
                "details": list(self.details),
            }
        }


@dataclass(frozen=True, slots=True)
class _Stage:
    """What a command does: the code and kind of its own failure, and whether a failure changed anything."""

    code: int
    kind: str
    unchanged: str  # true whenever the command fails before its end (said after a defect or a refusal)
    lost: str = ""  # said when the connection was lost or the run interrupted (when it differs)


_READ_ONLY = "nothing was changed (this command only reads)"
_STAGES: dict[str, _Stage] = {
    "diff": _Stage(5, "changeset", "nothing was changed: diff only reads (-o is written only on success)"),
    "show": _Stage(5, "changeset", _READ_ONLY),
    "apply": _Stage(
        9,
        "deployment",
        "the apply's transaction was rolled back: nothing was applied",
        "if this happened while committing, the deployment may have been committed: run `gardien diff` "
        "against the target (an empty diff means it was applied); otherwise nothing was applied",
    ),
    "rollback": _Stage(
        10,
        "rollback",
        "the rollback's transaction was rolled back: nothing was restored",
        "if this happened while committing, the rollback may have been committed: run it again (it says "
        "already rolled back if so); otherwise nothing was restored",
    ),
    "validate": _Stage(
        7, "validation", "validation could not run; nothing was changed on the target (it only reads it)"
    ),
    "windows": _Stage(3, "configuration", "nothing was changed (an --ics file may be incomplete)"),
    "approve": _Stage(
        8, "approval", "the answer may not have been recorded: look at the run in the Airflow UI"
    ),
    "reject": _Stage(
        8, "approval", "the answer may not have been recorded: look at the run in the Airflow UI"
    ),
    "report": _Stage(11, "ledger", "nothing was changed in the ledger (report only reads it)"),
    "audit": _Stage(
        11, "ledger", "nothing was changed in the ledger unless by `audit init`, which can be rerun"
    ),
    "demo": _Stage(3, "configuration", "the demo databases may be partly built: run the command again"),
    "ledger": _Stage(
        11, "ledger", "the ledger migration runs in one transaction: nothing was migrated; run it again"
    ),
}
_NO_COMMAND = _Stage(2, "usage", "nothing was changed")

# Server conditions that mean the connection is gone (not a refusal of the statement): SQLSTATE class 08,
# and administrator or crash shutdowns.
_LOST_STATES = ("57P01", "57P02", "57P03")
_KINDS: dict[type[errors.GardienError], str] = {
    errors.UsageError: "usage",
    errors.ConfigurationError: "configuration",
    errors.EnvironmentUnavailableError: "unreachable",
    errors.SourceDataError: "source_data",
    errors.ChangesetError: "changeset",
    errors.ConflictError: "conflict",
    errors.ValidationFailedError: "validation",
    errors.ApprovalError: "approval",
    errors.DeploymentError: "deployment",
    errors.RollbackError: "rollback",
    errors.LedgerError: "ledger",
}


def wants_json(args: list[str]) -> bool:
    """Whether the command line asks for JSON (``--json`` before any ``--``)."""
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def command_of(args: list[str]) -> str | None:
    """The command word (``diff``, ``audit``...): the first argument that is not an option."""
    return next((a for a in args if not a.startswith("-")), None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _split(message: str) -> tuple[str, tuple[str, ...]]:
    """A multi-line message as its first line and the following lines (the JSON ``details``)."""
    lines = [line.strip() for line in message.strip().splitlines()]
    return lines[0] if lines else "", tuple(line for line in lines[1:] if line)


def kind_of(exc: errors.GardienError) -> str:
    for cls in type(exc).__mro__:
        if cls in _KINDS:
            return _KINDS[cls]
    return "error"


def classify(exc: BaseException, args: list[str]) -> Failure:
    """The exit code and words for ``exc``, raised by the command ``args`` run."""
    if isinstance(exc, errors.GardienError):
        first, rest = _split(str(exc))
        return Failure(code=exc.exit_code, kind=kind_of(exc), message=first, details=rest)
    usage = _click_failure(exc, args)
    if usage is not None:
        return usage
    stage = _STAGES.get(command_of(args) or "", _NO_COMMAND)
    name = type(exc).__name__
    if isinstance(exc, KeyboardInterrupt) or name == "Abort":
        return Failure(130, "interrupted", f"interrupted; {stage.lost or stage.unchanged}")
    if isinstance(exc, psycopg2.Error):
        return _database_failure(exc, stage)
    if isinstance(exc, OSError) and getattr(exc, "filename", None):
        return Failure(
            2,
            "usage",
            f"{exc.filename}: {exc.strerror or name}; give a path that can be used; {stage.unchanged}",
        )
    if isinstance(exc, OSError):
        return Failure(stage.code, stage.kind, f"{name}: {_first_line(exc)}; {stage.unchanged}")
    return Failure(
        stage.code,
        stage.kind,
        f"unexpected {name}: {_first_line(exc)}; {stage.unchanged}. This is a defect in Gardien: report it "
        "with the command line",
    )


def _database_failure(exc: psycopg2.Error, stage: _Stage) -> Failure:
    state = getattr(exc, "pgcode", None) or ""
    cause = _first_line(exc)
    if isinstance(exc, psycopg2.errors.QueryCanceled) or state == "57014":
        what = "a statement was cancelled (statement timeout)"
    elif isinstance(exc, psycopg2.errors.LockNotAvailable) or state == "55P03":
        what = "a lock was not granted in time (lock timeout)"
    elif isinstance(exc, psycopg2.InterfaceError) or (
        isinstance(exc, psycopg2.OperationalError)
        and (not state or state[:2] == "08" or state in _LOST_STATES)
    ):
        code, kind = (11, "ledger") if stage.code == 11 else (4, "unreachable")
        return Failure(
            code, kind, f"the database connection was lost ({cause}); {stage.lost or stage.unchanged}"
        )
    elif isinstance(exc, psycopg2.errors.InsufficientPrivilege) or state == "42501":
        what = "the database role lacks a privilege"
        cause += " (docs/configuration.md lists what the role of each DSN needs)"
    else:
        what = "the database refused a statement"
    return Failure(stage.code, stage.kind, f"{what}: {cause}; {stage.unchanged}")


def _click_failure(exc: BaseException, args: list[str]) -> Failure | None:
    """Command-line errors of Click (typer ships its own copy: recognised by shape, not by class)."""
    exit_code = getattr(exc, "exit_code", None)
    if type(exc).__name__ == "Exit":
        return Failure(int(exit_code or 0), "exit", "")
    if not (isinstance(exit_code, int) and hasattr(exc, "show") and hasattr(exc, "format_message")):
        return None
    if type(exc).__name__ == "NoArgsIsHelpError":  # a group without its command: its help, exit 2
        return Failure(2, "usage", "", show_usage=exc.show)
    message = exc.format_message()
    if wants_json(args):
        return Failure(
            2, "usage", f"{message} (see `gardien {command_of(args) or ''} --help`)".replace("  ", " ")
        )
    return Failure(2, "usage", "", show_usage=exc.show)


def print_failure(failure: Failure, *, as_json: bool) -> None:
    """Print ``failure`` on stderr: ``error: <message>`` and its details, or its JSON document; every
    secret Gardien knows of (passwords of DSNs, tokens: gardien.redact) masked."""
    failure = replace(
        failure, message=redact_text(failure.message), details=tuple(redact_text(d) for d in failure.details)
    )
    if as_json:
        sys.stderr.write(json.dumps(failure.to_dict(), ensure_ascii=False) + "\n")
        return
    text = "\n".join([f"error: {failure.message}", *(f"  {d}" for d in failure.details)])
    try:
        import typer

        typer.secho(text, fg=typer.colors.RED, err=True)
    except Exception:  # noqa: BLE001 - printing must not fail: plain text then
        sys.stderr.write(text + "\n")
