"""Gardien's Airflow plugin: registers the release-window timetable (and, later, Gardien's web views)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from gardien.airflow import listener as release_listener

# DAG files import the timetable from this same module path; serialization looks it up by that path.
from gardien.airflow.timetable import ManualReleaseTimetable, ReleaseWindowTimetable


class GardienPlugin(AirflowPlugin):
    """Everything Gardien adds to Airflow; each attribute is one kind of extension."""

    name = "gardien"
    timetables = [ReleaseWindowTimetable, ManualReleaseTimetable]  # both make release ids the run ids
    listeners = [release_listener]  # writes each release run's outcome into its note
    # Web extensions go beside it, e.g. fastapi_apps = [{"app": ..., "url_prefix": "/gardien", "name": ...}].
