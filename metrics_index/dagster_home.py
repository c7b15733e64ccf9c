"""A Dagster home made ready once: the project's instance configuration in it and its SQLite storage created.

Two processes creating one fresh SQLite home at the same moment (the CLI and a daemon started together, or a daemon
and its code server) both create the tables and stamp the schema version, and one fails ("table runs already
exists", or alembic's "more than one head" later). The CLI (metrics_index.api.dagster_instance) and
deploy/dagster-home.sh, which starts its command through `python -m metrics_index.dagster_home HOME COMMAND...` on a
fresh home, make the home under one file lock, so only the first creates the storage and the others open it. Light
to import: the shell script pays for Dagster alone, and only once when the command is a script of the same Python.
"""

from __future__ import annotations

import fcntl
import os
import runpy
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
    if not argv:
        print("usage: python -m metrics_index.dagster_home DAGSTER_HOME [COMMAND ARGUMENT...]", file=sys.stderr)
        return 2
    open_home(Path(argv[0])).dispose()
    if len(argv) > 1:
        run_command(argv[1:])
    return 0


def run_command(command: list[str]) -> None:
    """Run `command` in this process when it is a Python script of this interpreter (a console script of the same
    virtualenv, such as dagster-daemon: what this process imported to make the home is then not imported again),
    otherwise replace this process with it. Either way it does not return unless the script does."""
    path = shutil.which(command[0])
    if path is not None and _script_of_this_python(Path(path)):
        sys.argv = [path, *command[1:]]
        runpy.run_path(path, run_name="__main__")
        return
    os.execvp(command[0], command)


def _script_of_this_python(path: Path) -> bool:
    """Its first line is `#!` and this very interpreter's path (a script of another virtualenv is not, even when
    both link to one Python)."""
    try:
        with path.open("rb") as file:
            first = file.readline(4096)
    except OSError:
        return False
    if not first.startswith(b"#!"):
        return False
    interpreter = first[2:].strip().split(b" ", 1)[0].decode(errors="replace")
    return Path(interpreter).absolute() == Path(sys.executable).absolute()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
