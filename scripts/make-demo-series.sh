#!/usr/bin/env bash
# Re-make the bundled series snapshot (metrics_index/data/demo-series.json.gz) from a real Prometheus scraping the
# six demo jobs: installs the Debian exporters when missing (as root, with apt, services not started), then runs
# scripts/make_demo_series.py, which starts everything on free 127.0.0.1 ports and stops it afterwards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(prometheus prometheus-node-exporter prometheus-redis-exporter prometheus-alertmanager
  prometheus-blackbox-exporter prometheus-pushgateway redis-server)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "make-demo-series: installing ${missing[*]}" >&2
  policy=/usr/sbin/policy-rc.d
  added=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
  [ -n "$added" ] && rm -f "$policy"
  [ -z "${status:-}" ] || exit "$status"
fi
bash scripts/setup.sh
exec .venv/bin/python scripts/make_demo_series.py
