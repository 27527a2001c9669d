"""How the CLI names a failure: exit code from the README's table, kind, one-line cause, what changed."""

from __future__ import annotations

import json

import psycopg2
import psycopg2.errors
import pytest

from gardien.cli.failure import Failure, classify, print_failure, wants_json
from gardien.errors import ConflictError, LedgerError


@pytest.mark.parametrize(
    ("exc", "args", "code", "kind", "words"),
    [
        (
            psycopg2.OperationalError("server closed the connection unexpectedly"),
            ["apply", "cs", "t"],
            4,
            "unreachable",
            "may have been committed",
        ),
        (
            psycopg2.InterfaceError("connection already closed"),
            ["rollback", "t", "d"],
            4,
            "unreachable",
            "run it again",
        ),
        (
            psycopg2.OperationalError("SSL SYSCALL error"),
            ["audit", "verify"],
            11,
            "ledger",
            "connection was lost",
        ),
        (
            psycopg2.errors.QueryCanceled("canceling statement due to statement timeout"),
            ["rollback", "t", "d"],
            10,
            "rollback",
            "statement timeout",
        ),
        (
            psycopg2.errors.LockNotAvailable("could not obtain lock"),
            ["apply", "cs", "t"],
            9,
            "deployment",
            "nothing was applied",
        ),
        (
            psycopg2.errors.InsufficientPrivilege("permission denied for database x"),
            ["apply", "cs", "t"],
            9,
            "deployment",
            "lacks a privilege: permission denied for database x (docs",
        ),
        (
            psycopg2.errors.UndefinedTable('relation "ledger.events" does not exist'),
            ["report", "R"],
            11,
            "ledger",
            "refused a statement",
        ),
        (
            ValueError("boom"),
            ["diff", "a", "b"],
            5,
            "changeset",
            "unexpected ValueError: boom; nothing was changed",
        ),
        (KeyError("x"), ["validate", "t"], 7, "validation", "defect in Gardien"),
        (
            PermissionError(13, "Permission denied", "/root/out.html"),
            ["report", "R"],
            2,
            "usage",
            "/root/out.html",
        ),
        (KeyboardInterrupt(), ["apply", "cs", "t"], 130, "interrupted", "may have been committed"),
        (RuntimeError("x"), [], 2, "usage", "nothing was changed"),
    ],
    ids=[
        "lost-apply",
        "closed-rollback",
        "lost-ledger",
        "timeout-rollback",
        "lock-apply",
        "privilege-apply",
        "refused-report",
        "defect-diff",
        "defect-validate",
        "file",
        "interrupt",
        "no-command",
    ],
)
def test_classify_unforeseen_failure_names_cause_code_and_what_changed(exc, args, code, kind, words):
    failure = classify(exc, args)
    assert (failure.code, failure.kind) == (code, kind)
    assert words in failure.message and "\n" not in failure.message


def test_classify_gardien_error_keeps_its_code_first_line_and_details():
    exc = ConflictError('2 field(s) changed:\n  unit ["U1"] label: ...\n  unit ["U2"] label: ...\nReconcile.')
    failure = classify(exc, ["apply", "--json"])
    assert failure == Failure(
        6,
        "conflict",
        "2 field(s) changed:",
        ('unit ["U1"] label: ...', 'unit ["U2"] label: ...', "Reconcile."),
    )
    assert classify(LedgerError("chain broken"), ["audit", "verify"]).kind == "ledger"


def test_print_failure_json_is_one_document_on_stderr(capsys):
    print_failure(Failure(5, "changeset", "bad", ("a", "b")), as_json=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert json.loads(err) == {
        "error": {"code": 5, "kind": "changeset", "message": "bad", "details": ["a", "b"]}
    }


def test_wants_json_ignores_arguments_after_double_dash():
    assert wants_json(["diff", "a", "b", "--json"]) and not wants_json(["show", "--", "--json"])
