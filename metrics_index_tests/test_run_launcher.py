"""The fork-server run launcher on a real Dagster instance: a launched run executes in its own process (forked from
the fork server, not the launching process) and reports its events; the process runs its exit handlers, so the last
run using the embedded Redis stops its server; a run is terminated on request; run monitoring sees a run whose
process was killed as failed."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from dagster import DagsterInstance, DagsterRunStatus, in_process_executor, instance_for_test, job, op, reconstructable
from dagster._core.launcher.base import WorkerStatus

from metrics_index.embedded_redis import embedded_servers, open_embedded_redis
from metrics_index.run_launcher import PID_TAG

LAUNCHER = {"module": "metrics_index.run_launcher", "class": "ForkserverRunLauncher"}


@op
def write_pid(context) -> None:
    """Leaves the run's process id where the test looks (a file named by the run id)."""
    folder = Path(os.environ["LAUNCHER_TEST_FOLDER"])
    (folder / context.run_id).write_text(str(os.getpid()))


@job(executor_def=in_process_executor)
def reports_pid() -> None:
    write_pid()


@op
def write_to_embedded_redis(context) -> None:
    """Opens the embedded Redis of the test's folder, which this run's process starts (and holds until it ends)."""
    client = open_embedded_redis(Path(os.environ["LAUNCHER_TEST_FOLDER"]) / "redis" / "redis.db")
    client.sadd("written-by-runs", context.run_id)


@job(executor_def=in_process_executor)
def uses_embedded_redis() -> None:
    write_to_embedded_redis()


@op
def sleep_long() -> None:
    time.sleep(300)


@job(executor_def=in_process_executor)
def sleeps() -> None:
    sleep_long()


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterInstance]:
    folder = tmp_path_factory.mktemp("launched")
    os.environ["LAUNCHER_TEST_FOLDER"] = str(folder)  # the fork server, started by the first launch, inherits it
    with instance_for_test(overrides={"run_launcher": LAUNCHER}) as instance:
        yield instance
    del os.environ["LAUNCHER_TEST_FOLDER"]


def _launch(instance: DagsterInstance, job_fn) -> str:
    recon = reconstructable(job_fn)
    run = instance.create_run_for_job(job_def=job_fn, job_code_origin=recon.get_python_origin())
    instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]  # the launcher needs none
    return run.run_id


def _wait_for(instance: DagsterInstance, run_id: str, statuses: set[DagsterRunStatus]) -> DagsterRunStatus:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        if run.status in statuses:
            return run.status
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {run.status} after 120 s")


def test_a_launched_run_executes_in_a_process_of_its_own(instance: DagsterInstance) -> None:
    run_id = _launch(instance, reports_pid)
    assert _wait_for(instance, run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}) == DagsterRunStatus.SUCCESS
    pid = int((Path(os.environ["LAUNCHER_TEST_FOLDER"]) / run_id).read_text())
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.tags[PID_TAG] == str(pid) and pid != os.getpid()


def test_the_last_run_using_the_embedded_redis_stops_it_as_its_process_ends(instance: DagsterInstance) -> None:
    """A forked process ends with os._exit, which skips exit handlers; the embedded Redis stops its server in one
    (that of the last process holding a client), so without them the server outlived the platform."""
    db_path = Path(os.environ["LAUNCHER_TEST_FOLDER"]) / "redis" / "redis.db"
    run_id = _launch(instance, uses_embedded_redis)
    assert _wait_for(instance, run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}) == DagsterRunStatus.SUCCESS
    run = instance.get_run_by_id(run_id)
    assert run is not None
    deadline = time.monotonic() + 60  # the process ends just after the run's last event
    while instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING:
        assert time.monotonic() < deadline, "the run's process did not end"
        time.sleep(0.1)
    try:
        assert embedded_servers(db_path.parent) == [], "the run's process, the last one using it, stopped the server"
        client = open_embedded_redis(db_path)
        assert client.smembers("written-by-runs") == {run_id.encode()}, "the server saved what the run wrote"
        client._cleanup()  # type: ignore[attr-defined]  # what this process's exit does: it is the last one out
    finally:
        for server in embedded_servers(db_path.parent):  # none, unless the test failed
            with server.client() as leftover, contextlib.suppress(redis.ConnectionError):
                leftover.shutdown(nosave=True)


def test_a_run_is_terminated_on_request(instance: DagsterInstance) -> None:
    run_id = _launch(instance, sleeps)
    _wait_for(instance, run_id, {DagsterRunStatus.STARTED})
    run = instance.get_run_by_id(run_id)
    assert run is not None and instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    assert instance.run_launcher.terminate(run_id)
    assert (
        _wait_for(instance, run_id, {DagsterRunStatus.CANCELED, DagsterRunStatus.FAILURE}) == DagsterRunStatus.CANCELED
    )
    assert not instance.run_launcher.terminate(run_id)  # a finished run is not terminated again


def test_run_monitoring_sees_a_killed_run_as_failed(instance: DagsterInstance) -> None:
    run_id = _launch(instance, sleeps)
    _wait_for(instance, run_id, {DagsterRunStatus.STARTED})
    run = instance.get_run_by_id(run_id)
    assert run is not None
    os.kill(int(run.tags[PID_TAG]), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (health := instance.run_launcher.check_run_worker_health(run)).status == WorkerStatus.RUNNING:
        assert time.monotonic() < deadline, "the killed run's process still looks alive"
        time.sleep(0.1)
    assert health.status == WorkerStatus.FAILED and run.tags[PID_TAG] in (health.msg or "")
    assert not instance.run_launcher.terminate(run_id)  # nothing left to signal
