"""A Dagster home made ready once: the project's instance configuration in it and its SQLite storage created.

Two processes creating one fresh SQLite home at the same moment (the CLI and a daemon started together, or a daemon
and its code server) both create the tables and stamp the schema version, and one fails ("table runs already
exists", or alembic's "more than one head" later). The CLI (metrics_index.api.dagster_instance) and
deploy/dagster-home.sh, which runs `python -m metrics_index.dagster_home HOME` before the command it starts, make the
home under one file lock, so only the first creates the storage and the others open it. Light to import: the shell
script pays for Dagster alone.
"""

from __future__ import annotations

import fcntl
import shutil
import sys
from pathlib import Path

import yaml
from dagster import DagsterInstance

DAGSTER_CONFIG = Path(__file__).parent / "data" / "dagster.yaml"
"""The project's Dagster instance configuration (run queue, pools, telemetry off), for every Dagster home it uses."""
LOCK_FILE = ".metrics-index.lock"


def open_home(home: Path) -> DagsterInstance:
    """The instance of `home`, made under the home's lock: the project's dagster.yaml is put in when the home has
    no configuration of its own (a missing or empty file), and the storage is created when it does not exist."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also when the process dies
        config = home / "dagster.yaml"
        if not config.exists() or not yaml.safe_load(config.read_text()):
            shutil.copyfile(DAGSTER_CONFIG, config)
        return DagsterInstance.from_config(str(home))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m metrics_index.dagster_home DAGSTER_HOME", file=sys.stderr)
        return 2
    open_home(Path(argv[0])).dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
