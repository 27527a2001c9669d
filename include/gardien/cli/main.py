"""Entry point of the ``gardien`` command: one Typer app, commands registered by topic modules.

Each topic module (engine, windows, audit, ...) exposes ``register(app)``; keeping them apart lets each
concept own its commands without one huge module.
"""

from __future__ import annotations

import importlib
import sys

import typer

from gardien.errors import GardienError
from gardien.redact import install_log_redaction, redact_text

app = typer.Typer(
    name="gardien",
    help="Carry EHR configuration changes from qualification to production, with proof.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_TOPICS = ("engine", "demo", "windows", "validate", "audit", "ledger", "approvals", "report")


@app.callback()
def _root() -> None:
    """Gardien: consistency, traceability and rollback for EHR configuration releases."""
    # An explicit callback keeps sub-commands as sub-commands even when a single topic is registered.


for _topic in _TOPICS:
    try:
        _module = importlib.import_module(f"gardien.cli.{_topic}")
    except ModuleNotFoundError as exc:  # topic not built yet
        if exc.name != f"gardien.cli.{_topic}":
            raise
        continue
    _module.register(app)


def main() -> None:
    """Run the CLI; a GardienError prints its message and exits with its own code."""
    install_log_redaction()
    try:
        # Without standalone mode, a typer.Exit(code) comes back as the return value.
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except GardienError as exc:
        typer.secho(f"error: {redact_text(str(exc))}", fg=typer.colors.RED, err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        # typer ships its own copy of click; recognise usage errors from either copy by duck typing.
        if hasattr(exc, "show") and type(exc).__name__ in {
            "UsageError",
            "BadParameter",
            "NoSuchOption",
            "MissingParameter",
            "BadOptionUsage",
            "BadArgumentUsage",
        }:
            exc.show()
            sys.exit(2)
        if type(exc).__name__ == "Exit":
            sys.exit(getattr(exc, "exit_code", 0))
        raise
