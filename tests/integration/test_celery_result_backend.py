"""The scheduler reads Celery results the way the CeleryExecutor does, from a real PostgreSQL result backend.

The compose stack and `make test-distributed` use the database result backend (``db+postgresql://``). The
Celery provider's BulkStateFetcher reads its rows itself and decodes them as celery up to 5.6 stored them
(pickled values). celery 5.7 stores encoded bytes there: reading a failed task's result then raised
TypeError in the scheduler, which crash-looped (seen in `make compose-check` after a task failed with a
ReadTimeout). requirements.txt pins the celery the provider supports; this test fails if the pin is lifted
while the provider still reads the rows so.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable


class ReadTimeoutLike(Exception):
    """Stands for the httpx.ReadTimeout a task failed with."""


def _backend_url(dsn: str) -> str:
    from urllib.parse import quote

    import psycopg2.extensions

    p = psycopg2.extensions.parse_dsn(dsn)
    auth = quote(p.get("user", "postgres"), safe="")
    if p.get("password"):
        auth += ":" + quote(p["password"], safe="")
    return (
        f"db+postgresql+psycopg2://{auth}@{p.get('host', '127.0.0.1')}:{p.get('port', '5432')}/{p['dbname']}"
    )


def test_bulk_state_fetcher_reads_failed_and_succeeded_results(make_db: Callable[[str], str]) -> None:
    from airflow.providers.celery.executors.celery_executor_utils import BulkStateFetcher
    from celery import Celery, states
    from celery.backends.database import DatabaseBackend
    from celery.result import AsyncResult

    app = Celery("gardien-test", broker="memory://", backend=_backend_url(make_db("celery")))
    backend = app.backend
    assert isinstance(backend, DatabaseBackend)  # the provider's path under test, not the generic one
    failed, succeeded, unknown = (str(uuid.uuid4()) for _ in range(3))
    backend.store_result(failed, ReadTimeoutLike("timed out"), states.FAILURE, traceback="Traceback ...")
    backend.store_result(succeeded, None, states.SUCCESS)

    fetched = BulkStateFetcher(1, celery_app=app).get_many(
        [AsyncResult(task_id, app=app) for task_id in (failed, succeeded, unknown)]
    )

    assert {task_id: state for task_id, (state, _info) in fetched.items()} == {
        failed: states.FAILURE,
        succeeded: states.SUCCESS,
        unknown: states.PENDING,
    }
    backend.ResultSession().get_bind().dispose()  # let make_db drop the database
