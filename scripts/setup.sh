#!/usr/bin/env bash
# Prepare this checkout: a Python 3.11 virtualenv in .venv with the project installed (editable, with the dev
# extras), and with --system also the Debian packages the tests start (redis-server, prometheus,
# prometheus-node-exporter, postgresql). Every step is skipped when already done, so repeated runs take a second or two.
#
# Usage: bash scripts/setup.sh [--system]
#   PYTHON=/path/to/python3.11  pick the interpreter (default: python3.11, else python3)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SYSTEM_PACKAGES=(redis-server prometheus prometheus-node-exporter postgresql)
VENV=.venv
STAMP="$VENV/.metrics-index-install"

log() { echo "setup: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    log "need root (or sudo) to run: $*"
    exit 1
  fi
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  # Keep apt from starting the packages' system services: the tests start their own servers on free ports.
  local policy=/usr/sbin/policy-rc.d added_policy=""
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
    added_policy=1
  fi
  local status=0
  as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends "$@" || status=$?
  [ -n "$added_policy" ] && as_root rm -f "$policy"
  return "$status"
}

ensure_system_packages() {
  local missing=() package
  for package in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "Debian packages already installed: ${SYSTEM_PACKAGES[*]}"
    return
  fi
  log "installing Debian packages: ${missing[*]}"
  local before
  before=$(enabled_services)
  apt_install "${missing[@]}"
  disable_new_services "$before"
}

# What starts at boot: systemd units wanted by a target, and SysV init scripts with a start link.
enabled_services() {
  find /etc/systemd/system -path '*.wants/*' -name '*.service' -printf 'systemd %f\n' 2>/dev/null
  find /etc/rc[2-5].d -name 'S*' -printf 'sysv %f\n' 2>/dev/null | sed -E 's/ S[0-9]+/ /'
  return 0
}

# Packages with a service enable it to start at boot (policy-rc.d only keeps apt from starting it now). The tests
# start their own servers on free ports, so whatever the install enabled is disabled again; services that were
# enabled before are left as they were. Works with or without systemd (a container has no systemctl): the
# packages' own tool, deb-systemd-helper, removes the unit's links, but runs only for a package's maintainer
# script ("was not called from dpkg" otherwise), hence DPKG_MAINTSCRIPT_PACKAGE; update-rc.d does the init scripts.
disable_new_services() {
  local kind name
  comm -13 <(echo "$1" | sort -u) <(enabled_services | sort -u) | while read -r kind name; do
    log "disabling the system service $name that the install enabled"
    if [ "$kind" = systemd ]; then
      as_root env DPKG_MAINTSCRIPT_PACKAGE=metrics-index-setup deb-systemd-helper disable "$name"
    else
      as_root update-rc.d "$name" disable
    fi
  done
}

is_python311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }

find_python() {
  local candidate
  for candidate in ${PYTHON:-} python3.11 python3; do
    if command -v "$candidate" >/dev/null && is_python311 "$candidate"; then
      echo "$candidate"
      return
    fi
  done
  log "Python 3.11 not found (set PYTHON=/path/to/python3.11)"
  exit 1
}

ensure_venv() {
  if [ -x "$VENV/bin/python" ] && is_python311 "$VENV/bin/python"; then
    return
  fi
  local python
  python=$(find_python)
  log "creating $VENV with $python"
  rm -rf "$VENV"
  if ! "$python" -m venv "$VENV" 2>/dev/null; then
    # Debian's own Python ships venv/ensurepip separately.
    rm -rf "$VENV"
    apt_install python3.11-venv
    "$python" -m venv "$VENV"
  fi
}

ensure_project() {
  local want
  want=$(cat pyproject.toml "$VENV/pyvenv.cfg" | sha256sum | cut -d' ' -f1)
  # The stamp alone is not enough when the checkout moved: the editable install must point here (-P: the check
  # must not import this folder's package just because it is the current directory).
  if [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ] &&
    "$VENV/bin/python" -P -c 'import metrics_index, pathlib, sys; sys.exit(not pathlib.Path(metrics_index.__file__).resolve().is_relative_to(pathlib.Path.cwd().resolve()))' 2>/dev/null; then
    log "project already installed in $VENV (pyproject.toml unchanged)"
    return
  fi
  log "installing the project into $VENV (pip install -e '.[dev]')"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
  echo "$want" >"$STAMP"
}

if [ "${1:-}" = "--system" ]; then
  ensure_system_packages
fi
ensure_venv
ensure_project
