# The metrics-index code location with the Dagster webserver and daemon (docker-compose.yml runs both from it).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home

WORKDIR /opt/metrics-index
COPY pyproject.toml README.md ./
COPY metrics_index ./metrics_index
RUN pip install . && mkdir -p "$DAGSTER_HOME"
COPY workspace.yaml ./
COPY deploy ./deploy

# Installs the instance configuration (Postgres when DAGSTER_POSTGRES_HOST is set) into $DAGSTER_HOME, then runs CMD.
ENTRYPOINT ["deploy/dagster-home.sh"]
CMD ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "workspace.yaml"]
