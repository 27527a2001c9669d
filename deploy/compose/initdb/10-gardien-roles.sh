#!/bin/bash
# Runs once, on an empty PostgreSQL data volume (docker-entrypoint-initdb.d), as the server's superuser.
# Creates one role per duty, each with its own password from the environment (docker-compose.yml):
#   airflow               owns Airflow's metadata database
#   gardien               deploys to the environments (CREATEDB: the demo environments, rehearsal databases)
#   gardien_ledger_owner  owns the ledger database; used only by airflow-init (ledger migration)
#   gardien_ledger_app    logs in as a member of gardien_ledger_writer; every release step uses it
set -euo pipefail
for var in AIRFLOW_DB_PASSWORD GARDIEN_DB_PASSWORD LEDGER_OWNER_PASSWORD LEDGER_WRITER_PASSWORD; do
  if [ -z "${!var:-}" ]; then
    echo "error: $var is not set; no role was created" >&2
    exit 3
  fi
done
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v gardien_pw="$GARDIEN_DB_PASSWORD" \
  -v owner_pw="$LEDGER_OWNER_PASSWORD" -v writer_pw="$LEDGER_WRITER_PASSWORD" <<'SQL'
BEGIN;
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE ROLE gardien LOGIN CREATEDB PASSWORD :'gardien_pw';
CREATE ROLE gardien_ledger_owner LOGIN CREATEROLE PASSWORD :'owner_pw';
CREATE ROLE gardien_ledger_writer NOLOGIN;
CREATE ROLE gardien_ledger_app LOGIN PASSWORD :'writer_pw' IN ROLE gardien_ledger_writer;
COMMIT;
CREATE DATABASE airflow OWNER airflow ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE gardien_ledger OWNER gardien_ledger_owner ENCODING 'UTF8' TEMPLATE template0;
SQL
