"""The production layout for real, without Docker: Dagster's storage in PostgreSQL, a Chroma server, a Redis server,
and the Dagster daemon and webserver as separate processes sharing that PostgreSQL instance.

One stack, three phases, as an operator would see them:
1. the namespace sensor registers three demo namespaces and the daemon indexes them in concurrent runs (each run's
   steps in its own process, the `chroma` pool raised for the server): runs, checks and ticks land in PostgreSQL,
   vectors in the Chroma server, names in Redis, and the CLI searches the Chroma server;
2. the Chroma server is killed in the middle of an index step and restarted: the run fails, the Slack alert sensor
   reports it once, and a re-execution from the failure converges;
3. PostgreSQL is killed while the sensor ticks and restarted: the daemon's next tick indexes the namespace that was
   added to the registry meanwhile.
The environment variables are the ones docker-compose.yml gives its services (a test below checks it).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import chromadb
import pytest
import redis
import yaml

from metrics_index.alerts import SLACK_WEBHOOK_ENV
from metrics_index.testing.servers import (
    LOOPBACK,
    POSTGRES_BIN,
    ChromaServer,
    ManagedProcess,
    PostgresServer,
    RedisServer,
    free_port,
    http_get,
    wait_until,
)
from metrics_index_tests.platform import SlackReceiver, graphql

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent
SNAPSHOT = ROOT / "metrics_index" / "data" / "demo-targets-metadata.json"
FIRST = ("demo:alertmanager", "demo:blackbox", "demo:pushgateway")
BULK = "bulk:workers"  # large enough that its index step lasts several upserts
BULK_METRICS = 1500
LATE = "demo:redis"  # added to the registry while PostgreSQL is down
UPSERT_BATCH = 50
OUTAGE_SECONDS = 8  # how long PostgreSQL stays down: more than two sensor intervals


def _demo_metric_count(namespace: str) -> int:
    job = namespace.split(":")[1]
    entries = json.loads(SNAPSHOT.read_text())["data"]
    return len({entry["metric"] for entry in entries if entry["target"]["job"] == job})


def _bulk_snapshot(path: Path) -> Path:
    entries = [
        {
            "target": {"job": "workers", "instance": "worker-1:9100"},
            "metric": f"worker_queue_{i:04d}_jobs_total",
            "type": "counter",
            "help": f"Jobs taken from queue {i} by the worker pool.",
            "unit": "",
        }
        for i in range(BULK_METRICS)
    ]
    path.write_text(json.dumps({"status": "success", "data": entries}))
    return path


@dataclass
class ScaleOutStack:
    """The servers, the Dagster processes and what the test needs to look at them."""

    tmp: Path
    postgres: PostgresServer
    chroma: ChromaServer
    redis: RedisServer
    slack: SlackReceiver
    registry: Path
    env: dict[str, str]
    url: str
    processes: list[ManagedProcess] = field(default_factory=list)

    def write_registry(self, *namespaces: str) -> None:
        sources = {
            namespace: {"snapshot": str(SNAPSHOT), "selector": f'{{job="{namespace.split(":")[1]}"}}'}
            for namespace in namespaces
            if namespace != BULK
        }
        if BULK in namespaces:
            sources[BULK] = {"snapshot": str(_bulk_snapshot(self.tmp / "bulk.json")), "selector": '{job="workers"}'}
        self.registry.write_text(yaml.safe_dump({"namespaces": sources}))

    def dagster(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "dagster"), *argv], env=self.env, capture_output=True, text=True, cwd=ROOT)

    def chroma_count(self, namespace: str) -> int:
        client = chromadb.HttpClient(host=LOOPBACK, port=self.chroma.port)
        return len(client.get_collection("metrics_index").get(where={"namespace": namespace}, include=[])["ids"])

    def run_status(self, namespace: str) -> list[tuple[str, str]]:
        """(run id, status) of the namespace's runs, oldest first, from the runs table in PostgreSQL."""
        return self.postgres.query(
            "SELECT r.run_id, r.status FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
            "WHERE t.key = 'dagster/partition' AND t.value = %s ORDER BY r.create_timestamp",
            namespace,
        )

    def partitions(self) -> list[str]:
        rows = self.postgres.query("SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'namespace'")
        return sorted(partition for (partition,) in rows)

    def materialized(self, namespace: str) -> set[str]:
        """Asset names materialized for the partition, from the event log in PostgreSQL."""
        rows = self.postgres.query(
            "SELECT DISTINCT asset_key FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
            "AND partition = %s",
            namespace,
        )
        return {json.loads(key)[-1] for (key,) in rows}

    def checks_evaluated(self, namespace: str) -> int:
        return self.postgres.query(
            "SELECT count(*) FROM asset_check_executions WHERE partition = %s AND execution_status = 'SUCCEEDED'",
            namespace,
        )[0][0]

    def indexed(self, namespace: str) -> bool:
        """The namespace's last run succeeded, its index is materialized and its checks ran."""
        runs = self.run_status(namespace)
        return (
            bool(runs)
            and runs[-1][1] == "SUCCESS"
            and "metric_semantic_index" in self.materialized(namespace)
            and self.checks_evaluated(namespace) > 0
        )

    def ticks(self, sensor: str) -> int:
        """Completed ticks of a sensor (the tick body names its instigator; the table has no name column)."""
        return self.postgres.query(
            "SELECT count(*) FROM job_ticks WHERE tick_body LIKE %s AND status <> 'STARTED'", f'%"{sensor}"%'
        )[0][0]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaleOutStack]:
    tmp = tmp_path_factory.mktemp("scale_out")
    # PostgreSQL runs as its own user when the tests run as root: its folder must not be under pytest's 0700 tmp.
    postgres_dir = Path(tempfile.mkdtemp(prefix="metrics-index-postgres-"))
    postgres_dir.chmod(0o755)
    postgres = PostgresServer(postgres_dir / "cluster")
    chroma = ChromaServer(tmp / "chroma", str(BIN / "chroma"))
    redis_server = RedisServer(tmp / "redis")
    started: list = []
    try:
        for server in (postgres, chroma, redis_server):
            server.start()
            started.append(server)
        with SlackReceiver() as slack:
            port = free_port()
            url = f"http://{LOOPBACK}:{port}"
            registry = tmp / "namespaces.yaml"
            env = {
                "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                "HOME": str(tmp),
                "DAGSTER_HOME": str(tmp / "dagster_home"),
                **postgres.env,
                "METRICS_INDEX_HOME": str(tmp / "home"),
                "METRICS_INDEX_REGISTRY": str(registry),
                "METRICS_INDEX_REDIS_URL": redis_server.url,
                "METRICS_INDEX_CHROMA_HOST": LOOPBACK,
                "METRICS_INDEX_CHROMA_PORT": str(chroma.port),
                "METRICS_INDEX_ENRICHER": "rules",
                "METRICS_INDEX_UPSERT_BATCH_SIZE": str(UPSERT_BATCH),
                "METRICS_INDEX_SENSOR_INTERVAL_SECONDS": "3",
                "METRICS_INDEX_ALERT_INTERVAL_SECONDS": "2",
                SLACK_WEBHOOK_ENV: slack.url,
                "METRICS_INDEX_UI_BASE_URL": url,
            }
            stack = ScaleOutStack(tmp, postgres, chroma, redis_server, slack, registry, env, url)
            stack.write_registry(*FIRST)
            subprocess.run([str(ROOT / "deploy" / "dagster-home.sh"), "true"], env=env, check=True)
            # With a Chroma server the store is safe across processes: raise the pool as the README says.
            concurrency = stack.dagster("instance", "concurrency", "set", "chroma", "4")
            assert concurrency.returncode == 0, concurrency.stderr
            yield stack
            for process in reversed(stack.processes):
                process.stop()
    finally:
        for server in reversed(started):
            server.stop()
        shutil.rmtree(postgres_dir, ignore_errors=True)


def _start_dagster(stack: ScaleOutStack) -> None:
    workspace = ["-w", str(ROOT / "workspace.yaml")]
    logs = stack.tmp / "logs"
    daemon = ManagedProcess("dagster-daemon", [str(BIN / "dagster-daemon"), "run", *workspace], logs, ROOT, stack.env)
    port = stack.url.rsplit(":", 1)[1]
    webserver = ManagedProcess(
        "dagster-webserver",
        [str(BIN / "dagster-webserver"), "-h", LOOPBACK, "-p", port, *workspace],
        logs,
        ROOT,
        stack.env,
    )
    stack.processes += [daemon, webserver]
    daemon.start()
    webserver.start()
    wait_until(lambda: http_get(f"{stack.url}/server_info")[0] == 200, "the webserver", timeout=120, process=webserver)


def _embedded_cli_seconds(stack: ScaleOutStack) -> float:
    """Index the same namespaces with the CLI on the embedded layout (SQLite, embedded Chroma and Redis), for the
    time printed beside the scale-out layout's."""
    servers = (*stack.postgres.env, "METRICS_INDEX_REDIS_URL", "METRICS_INDEX_CHROMA_HOST", "METRICS_INDEX_CHROMA_PORT")
    env = {key: value for key, value in stack.env.items() if key not in servers}
    env |= {"METRICS_INDEX_HOME": str(stack.tmp / "embedded"), "DAGSTER_HOME": str(stack.tmp / "embedded_dagster")}
    started = time.monotonic()
    run = subprocess.run([str(BIN / "metrics-index"), "index", *FIRST], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return time.monotonic() - started


def test_sensor_indexes_namespaces_into_postgres_chroma_server_and_redis(stack: ScaleOutStack) -> None:
    started = time.monotonic()
    _start_dagster(stack)
    daemon = stack.processes[0]
    wait_until(lambda: all(stack.indexed(n) for n in FIRST), "the three namespaces", timeout=900, process=daemon)
    scale_out = time.monotonic() - started
    print(
        f"\nthree demo namespaces: {scale_out:.1f} s through the sensor on the scale-out layout (daemon start "
        f"included), {_embedded_cli_seconds(stack):.1f} s with the CLI on the embedded layout"
    )

    # Dagster's state is in PostgreSQL: the runs, their check evaluations, the sensor's ticks, the partitions.
    runs = {namespace: stack.run_status(namespace) for namespace in FIRST}
    assert all(len(r) == 1 and r[0][1] == "SUCCESS" for r in runs.values()), runs
    assert stack.ticks("namespace_sensor") >= 1
    assert stack.partitions() == sorted(FIRST)  # no duplicate partitions
    # Steps ran in their run's own process (in-process executor: no step worker), and runs overlapped.
    workers = stack.postgres.query("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'STEP_WORKER_STARTED'")[
        0
    ][0]
    assert workers == 0
    spans = stack.postgres.query(
        "SELECT start_time, end_time FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
        "WHERE t.key = 'dagster/partition'"
    )
    spans = sorted(spans)  # at most two runs at once (dagster.yaml's max_concurrent_runs), and they did overlap
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)), "no two runs overlapped"

    # The data is in the servers: every metric in the Chroma server and in Redis, nothing lost to the concurrency.
    with redis.Redis.from_url(stack.redis.url, decode_responses=True) as client:
        for namespace in FIRST:
            expected = _demo_metric_count(namespace)
            assert stack.chroma_count(namespace) == expected, namespace
            assert client.scard(f"metrics-index:{namespace}:names") >= expected, namespace
    assert not (Path(stack.env["METRICS_INDEX_HOME"]) / "chroma").exists()  # no embedded store on the side

    # The CLI reads the same Chroma server.
    search = subprocess.run(
        [str(BIN / "metrics-index"), "search", "demo:alertmanager", "active silences", "-k", "3", "--json"],
        env=stack.env,
        capture_output=True,
        text=True,
        cwd=stack.tmp,
    )
    assert search.returncode == 0, search.stderr
    assert "alertmanager_silences" in {item["metric"] for item in json.loads(search.stdout)}


REEXECUTE = """
mutation Reexecute($parentRunId: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $parentRunId, strategy: FROM_FAILURE}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


def test_chroma_server_killed_mid_index_then_reexecution_converges(stack: ScaleOutStack) -> None:
    daemon = stack.processes[0]
    stack.write_registry(*FIRST, BULK)
    wait_until(lambda: stack.chroma_count(BULK) > 0, "the first upserts of the bulk namespace", 900, daemon)
    stack.chroma.kill()
    wait_until(lambda: any(s == "FAILURE" for _, s in stack.run_status(BULK)), "the run to fail", 300, daemon)
    stack.chroma.start()
    [(failed_run, _)] = stack.run_status(BULK)
    wait_until(lambda: any(failed_run in text for text in stack.slack.texts()), "the failed-run alert", 60, daemon)

    launched = graphql(stack.url, REEXECUTE, {"parentRunId": failed_run})["launchPipelineReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    wait_until(lambda: stack.run_status(BULK)[-1][1] == "SUCCESS", "the re-execution", 900, daemon)
    assert stack.chroma_count(BULK) == BULK_METRICS
    ticks = stack.ticks("slack_alert_sensor")
    wait_until(lambda: stack.ticks("slack_alert_sensor") >= ticks + 2, "two more alert ticks", 120, daemon)
    assert sum(failed_run in text for text in stack.slack.texts()) == 1


def test_postgres_killed_during_sensor_ticks_then_next_tick_converges(stack: ScaleOutStack) -> None:
    daemon = stack.processes[0]
    stack.postgres.kill()
    stack.write_registry(*FIRST, BULK, LATE)
    time.sleep(OUTAGE_SECONDS)
    stack.postgres.start()
    wait_until(lambda: stack.indexed(LATE), f"{LATE} indexed after PostgreSQL came back", 900, daemon)
    assert [status for _, status in stack.run_status(LATE)] == ["SUCCESS"]
    assert stack.chroma_count(LATE) == _demo_metric_count(LATE)
    assert stack.partitions() == sorted((*FIRST, BULK, LATE))


def test_compose_runs_the_versions_and_settings_this_test_runs() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["chroma"]["image"] == f"chromadb/chroma:{chromadb.__version__}"
    postgres_major = (
        subprocess.run([str(POSTGRES_BIN / "postgres"), "--version"], capture_output=True, text=True, check=True)
        .stdout.split()[-1]
        .split(".")[0]
    )
    assert services["postgres"]["image"] == f"postgres:{postgres_major}"
    redis_major = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    assert services["redis"]["image"].startswith("redis:7") and " v=7." in redis_major
    names = set(services["dagster-daemon"]["environment"])
    tested = {*PostgresServer(Path("unused")).env, SLACK_WEBHOOK_ENV, "METRICS_INDEX_UI_BASE_URL", "METRICS_INDEX_HOME"}
    tested |= {"METRICS_INDEX_REGISTRY", "METRICS_INDEX_REDIS_URL"}
    tested |= {"METRICS_INDEX_CHROMA_HOST", "METRICS_INDEX_CHROMA_PORT"}
    assert tested <= names
