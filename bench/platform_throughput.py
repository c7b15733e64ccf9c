"""The platform path against the CLI, in the same run: the six demo namespaces indexed and checked both ways.

    python bench/platform_throughput.py [--timeout 1800] [--sensor-interval 5]

1. CLI: `metrics-index index --all` on a fresh home (what the demo runs): its wall-clock time.
2. Platform: `deploy/dagster-home.sh dagster-daemon run -w workspace.yaml` on another fresh home (the README's
   recipe, without the webserver): the namespace sensor registers the namespaces and requests one run each. The
   time from the daemon's start until every partition has its four assets materialized and every check evaluated
   by a finished run, then each run's queue wait and duration, and their sum.
Both use the bundled snapshot, embedded Redis and Chroma and rule enrichment. The sensor ticks every
--sensor-interval seconds (the platform's default, 300 s, would only add a fixed wait before the first tick).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from metrics_index.checks import METRIC_CHECKS
from metrics_index.namespaces import load_registry
from metrics_index.testing.servers import ManagedProcess

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHECKS = {key.name for check in METRIC_CHECKS for key in check.check_keys}
FINISHED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


def base_env(home: Path) -> dict[str, str]:
    """The environment of a user with a fresh home and the bundled registry (the six demo namespaces)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("METRICS_INDEX_", "DAGSTER_"))}
    return {
        **environment,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "METRICS_INDEX_HOME": str(home),
        "METRICS_INDEX_ENRICHER": "rules",
    }


def cli_seconds(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([str(BIN / "metrics-index"), "index", "--all"], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def platform_seconds(
    env: dict[str, str], namespaces: list[str], folder: Path, timeout: float
) -> tuple[float, list[tuple[str, str, float, float]]]:
    """Seconds from the daemon's start until every namespace's run finished with its materializations and checks;
    per run: namespace, status, queue wait, duration."""
    dagster_home = Path(env["METRICS_INDEX_HOME"]) / "dagster"
    env = {**env, "DAGSTER_HOME": str(dagster_home)}
    daemon = ManagedProcess(
        "dagster-daemon",
        [str(ROOT / "deploy" / "dagster-home.sh"), str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        folder / "logs",
        ROOT,
        env,
    )
    # The recipe's first step alone (dagster.yaml into the home), then the SQLite storage made once: the daemon's
    # processes creating it at the same moment race on its schema version.
    subprocess.run([str(ROOT / "deploy" / "dagster-home.sh"), "true"], env=env, check=True)
    DagsterInstance.from_config(str(dagster_home)).dispose()
    started = time.time()
    daemon.start()
    try:
        while time.time() - started < timeout:
            time.sleep(2)
            if not daemon.running:
                raise SystemExit(f"the daemon stopped: see {daemon.log_path}")
            done = _finished_runs(dagster_home, namespaces)
            if done is not None:
                return max(end for _ns, _status, _queued, end, _dur in done) - started, [
                    (ns, status, queued, duration) for ns, status, queued, _end, duration in done
                ]
        raise SystemExit(f"not every namespace was indexed within {timeout:.0f} s: see {daemon.log_path}")
    finally:
        daemon.stop(timeout=30)


def _finished_runs(home: Path, namespaces: list[str]) -> list[tuple[str, str, float, float, float]] | None:
    """Each namespace's finished run (namespace, status, queue wait, end time, duration), once all are done and
    each has its four materializations and every check's evaluation; None before."""
    with DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(RunsFilter(statuses=list(FINISHED)))
        by_namespace = {r.dagster_run.tags.get("dagster/partition"): r for r in records}
        if not set(namespaces) <= by_namespace.keys():
            return None
        done = []
        for namespace in namespaces:
            record = by_namespace[namespace]
            run_id = record.dagster_run.run_id
            checks = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
            materialized = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
            if len(materialized.records) != 4 or len(checks) != len(CHECKS):
                raise SystemExit(f"{namespace}: run {run_id} is {record.dagster_run.status.value} without its work")
            done.append(
                (
                    namespace,
                    record.dagster_run.status.value,
                    record.start_time - record.create_timestamp.timestamp(),
                    record.end_time,
                    record.end_time - record.start_time,
                )
            )
        return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--sensor-interval", type=int, default=5)
    args = parser.parse_args()
    namespaces = sorted(load_registry().sources)
    with tempfile.TemporaryDirectory(prefix="metrics-index-platform-") as temporary:
        folder = Path(temporary)
        cli = cli_seconds(base_env(folder / "cli-home"))
        print(f"CLI `metrics-index index --all`, {len(namespaces)} namespaces: {cli:.1f} s", flush=True)
        env = base_env(folder / "platform-home")
        env["METRICS_INDEX_SENSOR_INTERVAL_SECONDS"] = str(args.sensor_interval)
        total, runs = platform_seconds(env, namespaces, folder, args.timeout)
    print(f"platform (daemon + namespace sensor), {len(namespaces)} namespaces: {total:.1f} s")
    for namespace, status, queued, duration in runs:
        print(f"  {namespace:<18} {status:<8} queued {queued:6.1f} s, ran {duration:6.1f} s")
    print(f"platform / CLI: {total / cli:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
