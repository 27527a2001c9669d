#!/bin/bash
# Like the official Airflow image's entrypoint: `airflow ARGS` (so `celery worker` is `airflow celery worker`),
# unless the first argument names a shell, Python, gardien or an absolute path.
set -euo pipefail
case "${1:-}" in
  bash | sh | python | python3 | gardien | /*) exec "$@" ;;
  *) exec airflow "$@" ;;
esac
