"""Airflow listener: when a release run finishes, write its outcome into the run's note.

The note (release id · changeset hash · OUTCOME) comes from the ``close`` task's XCom ``note``; the run list
then reads like a release log. Runs in the scheduler, which owns the metadata database session.
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


def set_release_note(dag_run: Any) -> None:
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
                    note = _note_for(dag_id, run_id, session)
                    if not note:
                        return
                    run = session.scalar(
                        select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
                    )
                    if run is not None:
                        run.note = note
                return
            except Exception:  # a note is a convenience: never break the scheduler for it
                if attempt == 9:
                    log.exception("could not write the release note of %s", run_id)
                time.sleep(1 + attempt)

    threading.Thread(target=write, name=f"gardien-note-{run_id}", daemon=True).start()


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    set_release_note(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    set_release_note(dag_run)
