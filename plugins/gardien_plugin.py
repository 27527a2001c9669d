"""Gardien's Airflow plugin: the release-window timetable, the run-outcome listener and the release board."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from gardien.airflow import board_app
from gardien.airflow import listener as release_listener
from gardien.airflow.answer_recorder import AnswerRecorder

# DAG files import the timetable from this same module path; serialization looks it up by that path.
from gardien.airflow.timetable import ManualReleaseTimetable, ReleaseWindowTimetable


class GardienPlugin(AirflowPlugin):
    """Everything Gardien adds to Airflow; each attribute is one kind of extension."""

    name = "gardien"
    timetables = [ReleaseWindowTimetable, ManualReleaseTimetable]  # both make release ids the run ids
    listeners = [release_listener]  # writes each release run's outcome into its note
    # Records each answer to an approval seat in the ledger the moment the API server accepts it.
    fastapi_root_middlewares = [{"middleware": AnswerRecorder, "name": "gardien-approval-answers"}]
    # The release board (server-rendered pages, every asset served by the app itself) behind Airflow's auth.
    fastapi_apps = [
        {"app": board_app.create_app(), "url_prefix": board_app.URL_PREFIX, "name": "Gardien release board"}
    ]
    # "Releases" in Airflow's navigation, showing the board inside the UI (same origin: the UI's login applies).
    external_views = [
        {
            "name": "Releases",
            "href": f"{board_app.URL_PREFIX}/",
            "destination": "nav",
            "url_route": "gardien-releases",
        }
    ]
