#!/bin/sh
# Put the Dagster instance configuration into $DAGSTER_HOME, then run the command given (e.g. `dagster dev`,
# `dagster-daemon run`, `dagster-webserver`). Postgres storage when DAGSTER_POSTGRES_HOST is set (with
# DAGSTER_POSTGRES_USER, DAGSTER_POSTGRES_PASSWORD, DAGSTER_POSTGRES_DB and optionally DAGSTER_POSTGRES_PORT),
# SQLite under $DAGSTER_HOME otherwise. DAGSTER_HOME defaults to the `dagster` folder of the metrics-index home, where
# the CLI keeps its runs: $METRICS_INDEX_HOME, else $XDG_DATA_HOME/metrics-index, else ~/.local/share/metrics-index
# (the rule of metrics_index.settings.metrics_home).
#
# Usage: deploy/dagster-home.sh COMMAND [ARGUMENTS...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
DAGSTER_HOME=${DAGSTER_HOME:-${METRICS_INDEX_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/metrics-index}/dagster}
export DAGSTER_HOME
mkdir -p "$DAGSTER_HOME"
if [ -n "${DAGSTER_POSTGRES_HOST:-}" ]; then
  DAGSTER_POSTGRES_PORT=${DAGSTER_POSTGRES_PORT:-5432}
  export DAGSTER_POSTGRES_PORT
  cp "$here/dagster-postgres.yaml" "$DAGSTER_HOME/dagster.yaml"
else
  cp "$here/../metrics_index/data/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
fi
exec "$@"
