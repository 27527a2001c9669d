"""Airflow listener: when a release run finishes, write its outcome into the run's note.

The note (release id · changeset hash · OUTCOME) comes from the ``close`` task's XCom ``note``; the run list
then reads like a release log. Runs in the scheduler, which owns the metadata database session.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)


def _note_for(dag_run: Any, session: Any) -> str | None:
    from airflow.models.xcom import XComModel

    row = session.scalars(
        XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids="close", key="note")
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
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            note = _note_for(dag_run, session)
            if note:
                run = session.merge(dag_run)
                run.note = note
    except Exception:  # a note is a convenience: never break the scheduler for it
        log.exception("could not write the release note of %s", getattr(dag_run, "run_id", "?"))


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    set_release_note(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    set_release_note(dag_run)
