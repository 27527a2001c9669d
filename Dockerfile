# Airflow image with Gardien installed (used by docker-compose.yml). Same pins as the local install.
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --chown=airflow:root requirements.lock /opt/gardien/requirements.lock
RUN pip install --no-cache-dir -r /opt/gardien/requirements.lock
COPY --chown=airflow:root pyproject.toml README.md /opt/gardien/
COPY --chown=airflow:root include /opt/gardien/include
RUN pip install --no-cache-dir --no-deps -e /opt/gardien
