"""Airflow listener: a release run's note links the release board from the start; when the run finishes,
the note gets its outcome.

The final note (release id · changeset hash · OUTCOME, and the release page link) comes from the ``close``
task's XCom ``note``; the run list then reads like a release log. Runs in the scheduler, which owns the
metadata database session.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)


def _note_for(dag_id: str, run_id: str, session: Any) -> str | None:
    from airflow.models.xcom import XComModel

    row = session.scalars(
        XComModel.get_many(run_id=run_id, dag_ids=dag_id, task_ids="close", key="note")
    ).first()
    if row is None:
        return None
    value = XComModel.deserialize_value(row)
    if isinstance(value, str) and value.startswith('"'):
        value = json.loads(value)
    return str(value)


def opening_note(run_id: str) -> str:
    """The note of a release run while it runs: its id and the link to its page on the release board."""
    from gardien.release.ids import release_page

    return f"Release {run_id} · [release page]({release_page(run_id)})"


def set_release_note(dag_run: Any, *, opening: bool = False) -> None:
    if not str(getattr(dag_run, "dag_id", "")).startswith("gardien_"):
        return
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    dag_id, run_id = dag_run.dag_id, dag_run.run_id

    def write() -> None:
        # Own session, own thread: the scheduler still holds its transaction (and a lock on the run's row)
        # while listeners run, so writing inline would wait on the scheduler that waits on us.
        for attempt in range(10):
            try:
                with Session(bind=settings.engine) as session, session.begin():
                    note = opening_note(run_id) if opening else _note_for(dag_id, run_id, session)
                    if not note:
                        return
                    run = session.scalar(
                        select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
                    )
                    if run is not None and not (opening and run.note):  # never overwrite a person's note
                        run.note = note
                return
            except Exception:  # a note is a convenience: never break the scheduler for it
                if attempt == 9:
                    log.exception("could not write the release note of %s", run_id)
                time.sleep(1 + attempt)

    threading.Thread(target=write, name=f"gardien-note-{run_id}", daemon=True).start()


@hookimpl
def on_dag_run_running(dag_run: Any, msg: str) -> None:
    from gardien.release.ids import is_release_id

    dag_id = str(getattr(dag_run, "dag_id", ""))
    if is_release_id(dag_run.run_id, path_name=dag_id.removeprefix("gardien_release_")):
        set_release_note(dag_run, opening=True)


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    set_release_note(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    set_release_note(dag_run)
