#!/bin/bash
# Like the official Airflow image's entrypoint: `airflow ARGS`, unless the first argument names a program.
set -euo pipefail
case "${1:-}" in
  bash | sh | python | python3 | gardien | celery | /*) exec "$@" ;;
  *) exec airflow "$@" ;;
esac
