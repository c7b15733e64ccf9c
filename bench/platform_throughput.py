"""The platform path against the CLI, in the same run: the six demo namespaces indexed and checked both ways.

    python bench/platform_throughput.py [--timeout 1800] [--sensor-interval SECONDS] [--keep DIR]

1. CLI: `metrics-index index --all` on a fresh home (what the demo runs): its wall-clock time.
2. Platform: `deploy/dagster-home.sh dagster-daemon run -w workspace.yaml` on another fresh home (the README's
   recipe, without the webserver): the namespace sensor registers the namespaces and requests one run each. The
   time from the daemon's start until every partition has its four assets materialized and every check evaluated
   by a finished run, then where each run's time went (from the instance's event log): waiting in the run queue,
   launching (the run's process starting and loading the project), its steps, and the time between its steps
   (step setup and waits on pool slots).
Both use the bundled snapshot, embedded Redis and Chroma and rule enrichment. The sensor's first tick comes as the
daemon starts, whatever its interval; later ticks come at the platform's default interval (300 s), as for a user,
or every --sensor-interval seconds (ticks every 5 s cost the daemon and the code server about 1 s of CPU a minute).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunRecord, RunsFilter

from metrics_index.assets import metric_semantic_index
from metrics_index.checks import METRIC_CHECKS
from metrics_index.dagster_home import open_home
from metrics_index.namespaces import load_registry
from metrics_index.testing.servers import ManagedProcess

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHECKS = {key.name for check in METRIC_CHECKS for key in check.check_keys}
POOLED_STEP = metric_semantic_index.key.to_python_identifier()
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


ROLES = (
    ("spawn_main", "runs"),
    ("multiprocessing.forkserver", "fork server"),
    ("api grpc", "code server"),
    ("dagster-daemon", "daemon"),
)
"""Which platform process a command line is (the first match); anything else is `other`. A process forked by the
fork server has its command line: the runs' processes are told apart by their pids (`by_role`)."""


class ProcessCpu:
    """CPU seconds of every process whose environment holds `marker` (the daemon, its code server, the runs),
    sampled from /proc: each process counts with its last sample, so up to one poll interval of a process that
    ended between samples is missed."""

    def __init__(self, marker: str) -> None:
        self.marker = marker.encode()
        self.seconds: dict[int, float] = {}
        self.roles: dict[int, str] = {}
        self.observer = 0.0  # CPU seconds of the bench itself while the platform worked (sampling, checking runs)

    def sample(self) -> None:
        ticks = os.sysconf("SC_CLK_TCK")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if self.marker not in (entry / "environ").read_bytes().split(b"\0"):
                    continue
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:  # ended, or not ours
                continue
            self.seconds[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            self.roles[int(entry.name)] = next((role for part, role in ROLES if part in command), "other")

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def by_role(self, runs: set[int]) -> dict[str, tuple[int, float]]:
        """Role -> (processes, CPU seconds); `runs` are the pids of the runs' processes."""
        roles: dict[str, tuple[int, float]] = {}
        for pid, seconds in self.seconds.items():
            role = "runs" if pid in runs else self.roles[pid]
            count, total = roles.get(role, (0, 0.0))
            roles[role] = (count + 1, total + seconds)
        return dict(sorted(roles.items()))


def cpu_seconds(who: int = resource.RUSAGE_CHILDREN) -> float:
    """User and system CPU time so far of every finished child process (and theirs, once reaped), or of this one."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def cli_seconds(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([str(BIN / "metrics-index"), "index", "--all"], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def platform_runs(
    env: dict[str, str], namespaces: list[str], folder: Path, timeout: float
) -> tuple[float, list[RunTimeline], ProcessCpu]:
    """The daemon's start (epoch seconds) and each namespace's run, once every one finished with its
    materializations and checks, and the CPU seconds of the platform's processes (sampled every half second,
    the runs checked every 2 s)."""
    dagster_home = Path(env["METRICS_INDEX_HOME"]) / "dagster"
    env = {**env, "DAGSTER_HOME": str(dagster_home)}
    daemon = ManagedProcess(
        "dagster-daemon",
        [str(ROOT / "deploy" / "dagster-home.sh"), str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        folder / "logs",
        ROOT,
        env,
    )
    cpu = ProcessCpu(f"METRICS_INDEX_HOME={env['METRICS_INDEX_HOME']}")
    started, observer_started = time.time(), cpu_seconds(resource.RUSAGE_SELF)
    daemon.start()
    with contextlib.ExitStack() as stack:
        stack.callback(daemon.stop, timeout=30)
        instance = None  # opened once, at the first check: opening a home costs 0.06 s of CPU taken from the platform
        for poll in itertools.count(1):
            if time.time() - started > timeout:
                break
            time.sleep(0.5)
            if not daemon.running:
                raise SystemExit(f"the daemon stopped: see {daemon.log_path}")
            cpu.sample()
            if poll % 4:
                continue
            if instance is None:  # under the home's lock: the daemon may be creating its storage
                instance = stack.enter_context(open_home(dagster_home))
            cpu.observer = cpu_seconds(resource.RUSAGE_SELF) - observer_started  # the last check reads every run
            done = _finished_runs(instance, namespaces)
            if done is not None:
                return started, done, cpu
        raise SystemExit(f"not every namespace was indexed within {timeout:.0f} s: see {daemon.log_path}")


@dataclass(frozen=True)
class RunTimeline:
    """Where one run's time went, from its instance's event log (seconds)."""

    namespace: str
    status: str
    created: float  # the sensor submitted it (epoch seconds)
    queued: float  # created -> RUN_STARTING: waiting in the run queue (dequeue interval, run limits, pools)
    launch: float  # RUN_STARTING -> RUN_START: the launcher starting the run's process, which loads the project
    steps: float  # the steps' own time, STEP_START -> STEP_SUCCESS/FAILURE, summed
    between: float  # RUN_START -> end minus the steps: step setup and waits on pool slots
    end: float  # epoch seconds
    pid: int  # the run's process (the code server spawns one a run)
    pooled: tuple[float, float]  # the index step (in the `chroma` pool; writes under the store's lock): start, end


def _finished_runs(instance: DagsterInstance, namespaces: list[str]) -> list[RunTimeline] | None:
    """Each namespace's finished run, once all are done and each has its four materializations and every check's
    evaluation; None before."""
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
        done.append(_timeline(instance, record))
    return done


def _timeline(instance: DagsterInstance, record: RunRecord) -> RunTimeline:
    events = [r.event_log_entry for r in instance.get_records_for_run(record.dagster_run.run_id, limit=10_000).records]
    first = {}
    for event in events:
        first.setdefault(event.dagster_event_type, event)
    created = record.create_timestamp.timestamp()
    launched = first[DagsterEventType.RUN_STARTING].timestamp  # the run queue handed it to the launcher
    step_started: dict[str, float] = {}
    steps = 0.0
    for event in events:
        if event.dagster_event_type == DagsterEventType.STEP_START:
            step_started[event.step_key] = event.timestamp
        elif event.dagster_event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            if event.step_key == POOLED_STEP:
                pooled = (step_started[event.step_key], event.timestamp)
            steps += event.timestamp - step_started.pop(event.step_key)
    assert record.start_time is not None and record.end_time is not None
    return RunTimeline(
        namespace=record.dagster_run.tags["dagster/partition"],
        status=record.dagster_run.status.value,
        created=created,
        queued=launched - created,
        launch=record.start_time - launched,
        steps=steps,
        between=record.end_time - record.start_time - steps,
        end=record.end_time,
        pid=first[DagsterEventType.RUN_START].dagster_event.pid,
        pooled=pooled,
    )


def idle_seconds(spans: list[tuple[float, float]]) -> float:
    """Time between the first span's start and the last one's end covered by none of the (sorted) spans."""
    idle, reach = 0.0, spans[0][1]
    for start, end in spans[1:]:
        idle += max(0.0, start - reach)
        reach = max(reach, end)
    return idle


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--sensor-interval", type=int, help="the namespace sensor's interval (default: the platform's)")
    parser.add_argument("--keep", type=Path, help="keep both homes and the daemon's log in this new folder")
    args = parser.parse_args()
    namespaces = sorted(load_registry().sources)
    with tempfile.TemporaryDirectory(prefix="metrics-index-platform-") as temporary:
        folder = Path(temporary)
        if args.keep:
            args.keep.mkdir(parents=True)
            folder = args.keep
        print(f"load average {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} cores", flush=True)
        cpu = cpu_seconds()
        cli = cli_seconds(base_env(folder / "cli-home"))
        cli_cpu = cpu_seconds() - cpu
        print(f"CLI `metrics-index index --all`, {len(namespaces)} namespaces: {cli:.1f} s ({cli_cpu:.0f} s CPU)")
        env = base_env(folder / "platform-home")
        if args.sensor_interval is not None:
            env["METRICS_INDEX_SENSOR_INTERVAL_SECONDS"] = str(args.sensor_interval)
        started, runs, platform_cpu = platform_runs(env, namespaces, folder, args.timeout)
    total = max(run.end for run in runs) - started
    print(
        f"platform (daemon + namespace sensor), {len(namespaces)} namespaces: {total:.1f} s "
        f"({platform_cpu.total:.0f} s CPU, its processes sampled every 0.5 s)"
    )
    roles = ", ".join(
        f"{role} {s:.1f} s ({n} processes)" for role, (n, s) in platform_cpu.by_role({run.pid for run in runs}).items()
    )
    print(f"  CPU by process: {roles}; this bench's own sampling and checks meanwhile {platform_cpu.observer:.1f} s")
    print(f"  first run submitted {min(run.created for run in runs) - started:.1f} s after the daemon's start")
    print(f"  {'namespace':<18} {'status':<8} {'queued':>7} {'launch':>7} {'steps':>7} {'between':>7} {'CPU':>7}")
    for run in runs:
        print(
            f"  {run.namespace:<18} {run.status:<8} {run.queued:6.1f}s {run.launch:6.1f}s {run.steps:6.1f}s "
            f"{run.between:6.1f}s {platform_cpu.seconds.get(run.pid, float('nan')):6.1f}s"
        )
    spans = sorted(run.pooled for run in runs)
    print(
        f"  index steps (writing Chroma one at a time): {spans[-1][1] - spans[0][0]:.1f} s from the first's start to "
        f"the last's end, {idle_seconds(spans):.1f} s of it with no index step running; the first started "
        f"{spans[0][0] - started:.1f} s after the daemon"
    )
    print(f"platform / CLI: {total / cli:.2f}x; load average {os.getloadavg()[0]:.1f} (1 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
