# Airflow image with Gardien installed (used by docker-compose.yml). Same pins as the local install.
# By default it builds on the official Airflow image; hosts without a public image registry pass a local base
# (deploy/images/airflow-base.Containerfile) as AIRFLOW_BASE_IMAGE — see docs/adr/0009-container-deployment.md.
# The package index comes from the builder's environment (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL,
# PIP_TRUSTED_HOST build arguments; PIP_CERT names a CA bundle mounted for the build, for sites whose
# proxy re-signs TLS); nothing about a site's registry or secrets is written into the image's files.
ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_BASE_IMAGE}
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
USER root
RUN if ! dpkg -s libpq5 curl >/dev/null 2>&1; then \
      apt-get update && apt-get install -y --no-install-recommends libpq5 curl && rm -rf /var/lib/apt/lists/*; \
    fi \
 && mkdir -p /opt/gardien/state && chown -R airflow:0 /opt/gardien && chmod -R g+rwX /opt/gardien
USER airflow
# Dependencies first: this layer is rebuilt only when the lock changes, not when the source does.
COPY --chown=airflow:0 requirements.lock /opt/gardien/requirements.lock
RUN if [ -n "${VIRTUAL_ENV:-}" ] && command -v uv >/dev/null; then \
      env ${PIP_INDEX_URL:+"UV_INDEX_URL=$PIP_INDEX_URL"} ${PIP_EXTRA_INDEX_URL:+"UV_EXTRA_INDEX_URL=$PIP_EXTRA_INDEX_URL"} \
        ${PIP_CERT:+"SSL_CERT_FILE=$PIP_CERT"} ${PIP_TRUSTED_HOST:+"UV_INSECURE_HOST=$PIP_TRUSTED_HOST"} \
        uv pip install --no-cache -r /opt/gardien/requirements.lock; \
    else \
      pip install --no-cache-dir -r /opt/gardien/requirements.lock; \
    fi
COPY --chown=airflow:0 pyproject.toml README.md /opt/gardien/
COPY --chown=airflow:0 include /opt/gardien/include
RUN pip install --no-cache-dir --no-deps -e /opt/gardien \
 && python -c "import airflow.providers.celery.executors.celery_executor_utils"
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
ENV GARDIEN_STATE_DIR=/opt/gardien/state \
    GARDIEN_CONFIG=/opt/gardien/config/gardien.yaml
WORKDIR /opt/airflow
