"""Entry point of the ``gardien`` command: one Typer app, commands registered by topic modules.

Each topic module (engine, windows, audit, ...) exposes ``register(app)``; keeping them apart lets each
concept own its commands without one huge module. Whatever goes wrong, ``main`` ends the process with a
code from the README's table and one named cause (as JSON under ``--json``), never a traceback
(gardien.cli.failure).
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer

from gardien.cli import failure as _failure
from gardien.redact import install_log_redaction

app = typer.Typer(
    name="gardien",
    help="Carry EHR configuration changes from qualification to production, with proof.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_TOPICS = ("engine", "demo", "windows", "validate", "audit", "ledger", "approvals", "report")


def version() -> str:
    """The installed package's version (the source tree's when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("gardien")
    except PackageNotFoundError:
        from gardien import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gardien {version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
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


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; on failure exit with the code of what went wrong (gardien.cli.failure)."""
    args = sys.argv[1:] if argv is None else argv
    install_log_redaction()
    try:
        # Without standalone mode, a typer.Exit(code) comes back as the return value.
        rc = app(args=args, prog_name="gardien", standalone_mode=False)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the one place every failure is turned into an exit code
        failed = _failure.classify(exc, args)
        if failed.show_usage is not None:
            failed.show_usage()
        if failed.message:
            # Looked up at each call: a wrapper installed on gardien.cli.failure.print_failure applies.
            _failure.print_failure(failed, as_json=_failure.wants_json(args))
        sys.exit(failed.code)
    if isinstance(rc, int) and rc:
        sys.exit(rc)


__all__ = ["app", "main"]
