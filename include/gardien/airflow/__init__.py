"""Airflow adapter: the only part of Gardien that imports Airflow."""
