"""One writer per store, readers that follow it (issue 11), with real processes, real Chroma and a real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from metrics_index.settings import PLATFORM_LOCK_WAIT_SECONDS, resources_from_env
from metrics_index.stores.lock import DEFAULT_WAIT_SECONDS, StoreBusyError, StoreLock, namespace_writer, writer_key
from metrics_index.testing.concurrency_drill import BYSTANDER, NAMESPACE, Drill
from metrics_index.testing.rounds import race
from metrics_index.testing.servers import ChromaServer

RUN_TIMEOUT = 600.0
HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_SH if sys.argv[2] == "shared" else fcntl.LOCK_EX)
os.write(fd, b"pid %d holds it x" % os.getpid())
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator:
    """Starts another process that holds a lock file (`shared` or `exclusive`) until it is killed."""
    started: list[subprocess.Popen] = []

    def hold(path: Path, mode: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(path), mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        started.append(process)
        assert process.stdout and process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


def test_store_lock_excludes_another_process_and_says_who_holds_it(tmp_path: Path, holder) -> None:
    path = tmp_path / "store" / "metrics-index.lock"
    path.parent.mkdir()
    other = holder(path, "exclusive")
    told: list[str] = []
    lock = StoreLock(path, "the test store", wait_seconds=0.3)
    with (
        pytest.raises(
            StoreBusyError, match=rf"the test store is in use by another process \(last writer: pid {other.pid}"
        ),
        lock.exclusive(told.append),
    ):
        pass
    assert len(told) == 1 and "waiting up to 0.3 s" in told[0]
    with pytest.raises(StoreBusyError), lock.shared():
        pass

    other.kill()
    other.wait()  # the kernel drops a dead process's lock: nothing to clean up
    with lock.exclusive() as seen, lock.shared() as nested:  # re-entrant in one thread
        assert seen.startswith(f"pid {other.pid}") and nested != seen
    assert lock.generation().startswith("pid ")


def test_store_lock_readers_share_and_keep_writers_out(tmp_path: Path, holder) -> None:
    path = tmp_path / "metrics-index.lock"
    holder(path, "shared")
    lock = StoreLock(path, "the test store", wait_seconds=0.2)
    with lock.shared():
        pass
    with pytest.raises(StoreBusyError), lock.exclusive():
        pass


def test_platform_runs_wait_for_a_store_longer_than_the_cli(tmp_path: Path) -> None:
    """Index steps of platform runs take turns on the store's lock (the `chroma` pool no longer queues them): one
    queued behind another run's long index must wait as it did in the pool, not fail after the CLI's 600 s."""
    env = {"METRICS_INDEX_HOME": str(tmp_path)}

    def waits(environment: dict[str, str], platform: bool) -> set[float]:
        resources = resources_from_env(environment, platform).values()
        return {r.lock_wait_seconds for r in resources if hasattr(r, "lock_wait_seconds")}

    assert waits(env, platform=False) == {DEFAULT_WAIT_SECONDS}
    assert waits(env, platform=True) == {PLATFORM_LOCK_WAIT_SECONDS} and PLATFORM_LOCK_WAIT_SECONDS > 3600
    assert waits({**env, "METRICS_INDEX_LOCK_WAIT_SECONDS": "5"}, platform=True) == {5.0}  # the setting wins
    from metrics_index.definitions import defs

    assert (
        defs.resources["chroma"].lock_wait_seconds
        == resources_from_env(os.environ, platform=True)["chroma"].lock_wait_seconds
    )


def test_namespace_writer_is_one_lease_in_redis_renewed_while_held(redis_client: redis.Redis) -> None:
    errors: list[Exception] = []

    def second_writer() -> None:
        try:
            with namespace_writer(redis_client, NAMESPACE, wait_seconds=0.3):
                pass
        except StoreBusyError as error:
            errors.append(error)

    with namespace_writer(redis_client, NAMESPACE, lease_seconds=0.6):
        with namespace_writer(redis_client, NAMESPACE):  # re-entrant: the steps of the API's own run
            other = threading.Thread(target=second_writer)
            other.start()
            other.join()
        threading.Event().wait(1.0)  # longer than the lease: only its renewal keeps it
        assert redis_client.pttl(writer_key(NAMESPACE)) > 0
    assert len(errors) == 1 and f"another run is writing namespace {NAMESPACE} (pid " in str(errors[0])
    assert redis_client.exists(writer_key(NAMESPACE)) == 0


@pytest.fixture(params=["embedded", "server"])
def drill(
    request: pytest.FixtureRequest, tmp_path: Path, redis_client: redis.Redis, redis_server: str
) -> Iterator[Drill]:
    drill = Drill(tmp_path / "home", redis_server, node_metrics=60)
    if request.param == "embedded":
        yield drill.prepare()
        return
    server = ChromaServer(tmp_path / "chroma-server").start()
    try:
        drill.chroma_host, drill.chroma_port = "127.0.0.1", server.port
        yield drill.prepare()
    finally:
        server.stop()


def test_index_runs_at_once_take_turns_and_a_warm_search_keeps_answering(drill: Drill) -> None:
    """Two runs of one namespace with different data (B deletes a third of A's metrics) while a warm search process
    keeps asking: the second run waits for the first, the stores agree afterwards, and no search fails or comes
    back empty; the searcher follows a last re-index to the other data."""
    first = drill.run("a", NAMESPACE, BYSTANDER, timeout=RUN_TIMEOUT)
    assert first.code == 0, first.stderr[-2000:]
    searcher = drill.search_loop(1_000_000)
    searcher.ready()

    runs = drill.index_at_once(RUN_TIMEOUT)
    assert [run.code for run in runs] == [0, 0], [run.stderr[-2000:] for run in runs]
    # Started together, they overlap (each holds the namespace for seconds): the later one says it waits.
    assert sum(f"another run is writing namespace {NAMESPACE}" in run.stderr for run in runs) <= 1
    if not drill.stores_check()[NAMESPACE]["revised"]:  # A was written last: write B once more, alone
        assert drill.run("b", timeout=RUN_TIMEOUT).code == 0
    searcher.stop_at(drill.home, "b")
    searched = searcher.result(RUN_TIMEOUT)

    assert (searched.get("errors"), searched.get("empty"), searched.get("kinds")) == (0, 0, {}), searched
    assert searched["switches"] >= 1, searched
    report = drill.stores_check()
    assert "error" not in report, report
    for namespace, differences in report.items():
        assert {k: v for k, v in differences.items() if k not in {"documents", "revised"}} == dict.fromkeys(
            ("redis_not_raw", "raw_not_redis", "chroma_not_enriched", "enriched_not_chroma", "raw_not_enriched",
             "duplicate_ids"), 0
        ), (namespace, differences)  # fmt: skip
    assert report[NAMESPACE]["documents"] == report[NAMESPACE]["revised"] == 40  # B's data whole, none of A left
    assert report[BYSTANDER] == {**report[BYSTANDER], "documents": 60, "revised": 0}


_OPEN_FRESH_STORES = """
from metrics_index.stores.connections import open_semantic_index
from metrics_index.testing.rounds import failure_reported, meet, worker_argv
meeting, worker, workers, rounds, (folder,) = worker_argv()
with failure_reported(meeting, worker):
    for cycle in range(rounds):
        meet(meeting, f"open{cycle}", worker, workers)
        assert open_semantic_index(f"{folder}/store{cycle}").ids("acme:app") == []
"""


def test_processes_opening_a_new_embedded_chroma_store_at_once_all_open_it(tmp_path: Path) -> None:
    """The first two runs of a fresh home open its embedded Chroma at the same moment, and opening a new store
    creates its tables: one of them failed ("database is locked", "table collections already exists"; 2 rounds in
    8 of this test). One process at a time opens a store."""
    race(_OPEN_FRESH_STORES, tmp_path / "meeting", 3, 12, str(tmp_path))
    assert len(list(tmp_path.glob("store*/chroma.sqlite3"))) == 12
