"""``gardien diff | show | apply | rollback``: the changeset engine on the command line."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from gardien.changeset import Changeset, read_changeset
from gardien.config import DEFAULT_CONFIG_PATH, load_config, resolve_environment
from gardien.errors import UsageError
from gardien.portable import key_text

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "-c", "--config", envvar="GARDIEN_CONFIG", help=f"Gardien YAML configuration [{DEFAULT_CONFIG_PATH}]."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of text.")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (recorded in the ledger).")]
ActorOpt = Annotated[
    str | None,
    typer.Option("--actor", envvar="GARDIEN_ACTOR", help="Who acts, as recorded in the ledger [login name]."),
]


def _actor(given: str | None) -> str:
    from gardien.release.manual import login_name

    return given or login_name()


def register(app: typer.Typer) -> None:
    """Add the engine commands to the ``gardien`` app."""
    app.command("diff")(diff_cmd)
    app.command("show")(show_cmd)
    app.command("apply")(apply_cmd)
    app.command("rollback")(rollback_cmd)


@contextmanager
def _progress(enabled: bool, label: str) -> Iterator[Any]:
    """A rich progress line on a terminal; nothing for pipes or --json."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console

    with Console(stderr=True).status(label) as status:
        yield status


def _emit(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _read_changeset(path: Path) -> Changeset:
    return read_changeset(path)


def diff_cmd(
    source: Annotated[str, typer.Argument(help="Source environment name or libpq URI.")],
    target: Annotated[str, typer.Argument(help="Target environment name or libpq URI.")],
    config: ConfigOpt = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the changeset to this file.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Capture the changeset that makes TARGET's managed scope equal SOURCE's (an empty one is normal)."""
    from gardien.diff import diff

    cfg = load_config(config)
    src, tgt = resolve_environment(cfg, source), resolve_environment(cfg, target)
    with _progress(not as_json, f"diff {src.name} → {tgt.name}") as status:

        def progress(table: str, _index: int) -> None:
            if status is not None:
                status.update(f"diff {src.name} → {tgt.name}: {table}")

        changeset = diff(
            src.dsn,
            tgt.dsn,
            catalog_config=cfg.catalog,
            source_label=src.name,
            target_label=tgt.name,
            progress=progress,
        )
    if output is not None:
        try:
            output.write_text(changeset.to_json(), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror}; choose a writable path for -o") from exc
    if as_json:
        _emit(_summary(changeset) if output is not None else changeset.to_dict())
        return
    for line in _describe(changeset, detail=False):
        typer.echo(line)
    if output is not None:
        typer.echo(f"changeset written to {output}")


def show_cmd(
    changeset_file: Annotated[Path, typer.Argument(help="A changeset file written by `gardien diff -o`.")],
    as_json: JsonOpt = False,
) -> None:
    """Summarise a changeset: counts per table and every field-level change."""
    changeset = _read_changeset(changeset_file)
    if as_json:
        _emit({**_summary(changeset), "changeset": changeset.body()})
        return
    for line in _describe(changeset, detail=True):
        typer.echo(line)


def apply_cmd(
    changeset_file: Annotated[Path, typer.Argument(help="A changeset file written by `gardien diff -o`.")],
    target: Annotated[str, typer.Argument(help="Target environment name or libpq URI.")],
    config: ConfigOpt = None,
    release: Annotated[
        str | None, typer.Option("--release", help="Release id recorded in the journal.")
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", help="Release label recorded in the journal.")
    ] = None,
    lock_timeout: Annotated[
        int, typer.Option(min=1, help="Milliseconds to wait for the target's deployment lock.")
    ] = 10_000,
    statement_timeout: Annotated[
        int, typer.Option(min=1, help="Milliseconds allowed per statement.")
    ] = 600_000,
    requested_by: Annotated[
        str | None,
        typer.Option(
            "--requested-by", help="Who requested this change (fills on_insert: requester columns)."
        ),
    ] = None,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    break_glass: Annotated[
        bool,
        typer.Option(
            "--break-glass",
            help="Apply to a production target without an approved release (needs --reason; recorded, announced).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply a changeset to TARGET in one transaction (three-way checked; re-applying is a no-op).

    Recorded in the ledger (who, why, from the CLI). A production target takes only a changeset a release in
    the ledger approved (same hash, quorum met, window open), unless --break-glass --reason "..."."""
    from gardien.apply import Timeouts, deploy
    from gardien.release import manual
    from gardien.release.guard import check_production_apply

    changeset = _read_changeset(changeset_file)
    cfg = load_config(config)
    env = resolve_environment(cfg, target)
    operator = manual.Operator(
        actor=_actor(actor),
        reason=reason,
        entry_point="cli",
        now=dt.datetime.now(dt.UTC),
        break_glass=break_glass,
    )
    approved = check_production_apply(cfg, env, changeset, operator=operator)
    recorded = manual.require_ledger(cfg, env)
    deployment_id = f"dep-{uuid.uuid4().hex[:16]}"
    release_id = approved.id if approved is not None else release
    if recorded:  # the intent first: if this process dies after the commit, reconciliation finds the row
        manual.record_intent(
            cfg,
            kind=manual.APPLY_INTENT,
            env=env,
            target_deployment_id=deployment_id,
            changeset_id=changeset.id,
            release_id=approved.id if approved is not None else None,
            operator=operator,
        )
    else:
        typer.secho(f"warning: {env.name}: no ledger configured, this apply is not recorded", err=True)
    with _progress(not as_json, f"apply {changeset.id[:12]} → {env.name}"):
        result = deploy(
            env.dsn,
            changeset,
            catalog_config=cfg.catalog,
            target=env.name,
            applied_at=operator.now,
            deployment_id=deployment_id,
            release_id=release_id,
            release_label=label,
            timeouts=Timeouts(lock_ms=lock_timeout, statement_ms=statement_timeout),
            # on_insert: requester: the approved release's requester, unless given
            requested_by=requested_by or (approved.requested_by if approved is not None else None),
        )
    if recorded:
        manual.record_apply(cfg, env=env, result=result, release=approved, operator=operator)
    if break_glass and env.production and result.status == "applied":
        manual.announce_break_glass(
            cfg, env=env, changeset_id=changeset.id, operator=operator, environ=os.environ
        )
    if as_json:
        _emit(result.to_dict())
        return
    if result.status != "applied":
        typer.echo(
            f"{result.status.replace('_', ' ')}: nothing to do on {env.name} (deployment {result.deployment_id})"
        )
        return
    typer.echo(f"applied changeset {changeset.id[:12]} to {env.name}: deployment {result.deployment_id}")
    for table, counts in result.counts.items():
        typer.echo(f"  {table}: +{counts['inserts']} ~{counts['updates']} -{counts['deletes']}")
    for note in result.drift:
        typer.echo(f"  drift (not blocking): {note.describe()}")
    typer.echo(f"  fingerprint {result.fingerprint_before[:12]} → {result.fingerprint_after[:12]}")
    if result.note:
        typer.echo(f"  note: {result.note}")


def rollback_cmd(
    target: Annotated[str, typer.Argument(help="Target environment name or libpq URI.")],
    deployment_id: Annotated[str, typer.Argument(help="The deployment to undo (printed by apply).")],
    config: ConfigOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Roll back even if later deployments touched the same rows.")
    ] = False,
    keep_later_edits: Annotated[
        bool,
        typer.Option(
            "--keep-later-edits",
            help="Keep the edits made since the deployment to fields it did not change (recorded in the proof); "
            "without it any such edit refuses the rollback.",
        ),
    ] = False,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore the rows a deployment changed, then prove the restoration by fingerprint.

    Recorded in the ledger (who, why, from the CLI); a release's deployment shows the rollback in its report."""
    from gardien.errors import RollbackError
    from gardien.release import manual
    from gardien.rollback import rollback

    cfg = load_config(config)
    env = resolve_environment(cfg, target)
    operator = manual.Operator(
        actor=_actor(actor), reason=reason, entry_point="cli", now=dt.datetime.now(dt.UTC)
    )
    recorded = manual.require_ledger(cfg, env)
    if recorded:
        known = manual.ledger_deployment(cfg, env, deployment_id)
        manual.record_intent(
            cfg,
            kind=manual.ROLLBACK_INTENT,
            env=env,
            target_deployment_id=deployment_id,
            changeset_id=known.changeset_id if known else "",
            release_id=known.release_id if known else None,
            operator=operator,
        )
    try:
        with _progress(not as_json, f"rollback {deployment_id} on {env.name}"):
            result = rollback(
                env.dsn,
                deployment_id,
                catalog_config=cfg.catalog,
                target=env.name,
                rolled_back_at=operator.now,
                force=force,
                keep_later_edits=keep_later_edits,
            )
    except RollbackError as exc:
        if not recorded:
            raise
        told = manual.recorded_rollback_failure(
            cfg,
            env=env,
            target_deployment_id=deployment_id,
            changeset_id=known.changeset_id if known else "",
            error=exc,
            keep_later_edits=keep_later_edits,
            operator=operator,
        )
        if told is exc:
            raise
        raise told from exc
    if recorded and result.status == "rolled_back":
        manual.record_rollback(
            cfg,
            env=env,
            target_deployment_id=deployment_id,
            changeset_id=result.changeset_id,
            proven=result.proven,
            fingerprints={"expected": result.fingerprint_expected, "restored": result.fingerprint_restored},
            detail=_kept_detail(result.kept_later_edits),
            operator=operator,
        )
    if as_json:
        _emit(result.to_dict())
        return
    typer.echo(
        f"{result.status.replace('_', ' ')}: deployment {result.deployment_id} on {env.name}; restoration "
        f"{'proven' if result.proven else 'NOT proven'} (fingerprint {result.fingerprint_restored[:12]} = "
        f"pre-deployment {result.fingerprint_expected[:12]})"
    )
    if result.note:
        typer.echo(f"  note: {result.note}")
    for kept in result.kept_later_edits:
        typer.echo(
            f"  later edit kept (set back after the proven restoration): {kept['table']} "
            f"{key_text(tuple(kept['key']))} {kept['field']} = {kept['value']!r}"
        )


def _kept_detail(kept: tuple[dict[str, Any], ...]) -> str | None:
    """What a rollback with --keep-later-edits kept, for the ledger (None when nothing was kept)."""
    if not kept:
        return None
    return "later edits kept (--keep-later-edits): " + "; ".join(
        f"{k['table']} {key_text(tuple(k['key']))} {k['field']} = {k['value']!r}" for k in kept
    )


def _summary(changeset: Changeset) -> dict[str, Any]:
    return {"id": changeset.id, "empty": changeset.is_empty, "counts": changeset.counts()}


def _describe(changeset: Changeset, *, detail: bool) -> Iterator[str]:
    yield f"changeset {changeset.id}"
    if changeset.is_empty:
        yield "  empty: the target already equals the source"
        return
    for tc in changeset.tables:
        yield f"  {tc.table}: {len(tc.inserts)} insert(s), {len(tc.updates)} update(s), {len(tc.deletes)} delete(s)"
        if not detail:
            continue
        for ins in tc.inserts:
            yield f"    + {key_text(ins.key)} {json.dumps(ins.values, ensure_ascii=False)}"
        for upd in tc.updates:
            yield f"    ~ {key_text(upd.key)}"
            for column, change in upd.changes.items():
                yield f"        {column}: {json.dumps(change.before, ensure_ascii=False)} → {json.dumps(change.after, ensure_ascii=False)}"
        for dele in tc.deletes:
            yield f"    - {key_text(dele.key)}"
