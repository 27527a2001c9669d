"""Releases: release paths (stages), the release service the DAGs call, outcomes and reports."""
