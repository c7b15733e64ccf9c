#!/bin/sh
# Put the Dagster instance configuration into $DAGSTER_HOME, then run the command given (e.g. `dagster dev`,
# `dagster-daemon run`, `dagster-webserver`). Postgres storage when DAGSTER_POSTGRES_HOST is set (with
# DAGSTER_POSTGRES_USER, DAGSTER_POSTGRES_PASSWORD, DAGSTER_POSTGRES_DB and optionally DAGSTER_POSTGRES_PORT),
# SQLite under $DAGSTER_HOME otherwise. DAGSTER_HOME defaults to the `dagster` folder of the metrics-index home, where
# the CLI keeps its runs: $METRICS_INDEX_HOME, else $XDG_DATA_HOME/metrics-index, else ~/.local/share/metrics-index
# (the rule of metrics_index.settings.metrics_home). A fresh SQLite home gets its storage before the command starts.
#
# Usage: deploy/dagster-home.sh COMMAND [ARGUMENTS...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
DAGSTER_HOME=${DAGSTER_HOME:-${METRICS_INDEX_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/metrics-index}/dagster}
export DAGSTER_HOME
mkdir -p "$DAGSTER_HOME"
# Dagster 1.13 warns at every `dagster dev` that the command is superseded by `dg dev` (the dagster-dg-cli package,
# which this project does not use); `dagster dev` itself is unchanged, so that one warning is not shown.
PYTHONWARNINGS="ignore:Function \`dev_command\` is superseded${PYTHONWARNINGS:+,$PYTHONWARNINGS}"
export PYTHONWARNINGS
if [ -n "${DAGSTER_POSTGRES_HOST:-}" ]; then
  DAGSTER_POSTGRES_PORT=${DAGSTER_POSTGRES_PORT:-5432}
  export DAGSTER_POSTGRES_PORT
  cp "$here/dagster-postgres.yaml" "$DAGSTER_HOME/dagster.yaml"
else
  cp "$here/../metrics_index/data/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
  # The SQLite storage is created once, under the lock the CLI takes too (metrics_index/dagster_home.py): Dagster
  # processes creating a fresh home at the same moment fail on its schema. The Python is the one beside the command
  # (e.g. .venv/bin/dagster), else python3, whichever has metrics-index installed (looked up without importing it).
  # That Python makes the home and then runs the command, in the same process when it is a script of that Python
  # (dagster, dagster-daemon, dagster-webserver): Dagster is imported once, not once to make the home and again for
  # the command (about 3 s of CPU, and the first run of a fresh home 2 to 3 s sooner).
  has_project='import importlib.util as u, sys; sys.exit(not (u.find_spec("dagster") and u.find_spec("metrics_index")))'
  if [ ! -e "$DAGSTER_HOME/history/runs.db" ]; then
    for python in "$(dirname "$(command -v "$1" || echo .)")/python" python3; do
      if "$python" -c "$has_project" 2>/dev/null; then
        exec "$python" -m metrics_index.dagster_home "$DAGSTER_HOME" "$@"
      fi
    done
  fi
fi
exec "$@"
