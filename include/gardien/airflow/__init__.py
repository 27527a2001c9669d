"""Airflow adapter: the only part of Gardien that imports Airflow."""

from gardien.redact import install_log_redaction

# Every task that imports the adapter logs through the one redaction (task logs are read by many people).
install_log_redaction()
