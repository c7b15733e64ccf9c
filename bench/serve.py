"""The search service under load: 20 concurrent clients, 10,000 searches over a synthetic namespace, a re-index of
that namespace in the middle; then the cold CLI beside it.

    python bench/serve.py                                  # 50,000 metrics (about 3 minutes of embedding on 2 cores)
    python bench/serve.py --metrics 10000                  # quicker
    python bench/serve.py --baseline-src /path/to/old/checkout   # also time that checkout's CLI, side by side

What runs, all on 127.0.0.1: a Debian redis-server and a Chroma server (`chroma run`), which the service and the
indexer share as in a deployment (embedded Chroma is not safe across processes); `metrics-index index` builds
the synthetic namespace (bench/scale.py's generator) and the demo's `demo:node`; `metrics-index serve` answers.
The clients are asyncio tasks speaking HTTP/1.1 with keep-alive, each sending its next search when the last one
is answered. After a share of the searches, `metrics-index index` runs again on the namespace with 1% of its
help texts changed (those documents are re-embedded, the revision is bumped) and the service reloads it in the
background; the run goes on until the reload was seen and at least --searches were answered. Questions are
drawn from a pool of distinct ones (hand-written plus the synthetic help texts), so the query-embedding cache
of the service hits only on repeats. Then the cold CLI: `metrics-index search demo:node ...` as new processes,
against the stores and through the service (METRICS_INDEX_URL), best and median of --cli-runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scale import SEARCH_QUESTIONS, synthetic_entries  # bench/ is on the path of a script run from it

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "metrics_index.cli"]
NAMESPACE = "bench:synthetic"
DEMO = "demo:node"
DEMO_QUESTION = "free space on filesystems"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, what: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not answer {url} within {timeout} s")


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def write_registry(home: Path, size: int) -> tuple[Path, list[dict[str, Any]]]:
    entries = synthetic_entries(size)
    (home / "synthetic.json").write_text(json.dumps({"status": "success", "data": entries}))
    demo = ROOT / "metrics_index" / "data" / "demo-targets-metadata.json"
    registry = home / "namespaces.yaml"
    registry.write_text(
        json.dumps(
            {
                "namespaces": {
                    NAMESPACE: {"snapshot": "synthetic.json", "selector": '{job="synthetic"}'},
                    DEMO: {"snapshot": str(demo), "selector": '{job="node"}'},
                }
            }
        )
    )
    return registry, entries


def change_help_texts(home: Path, entries: list[dict[str, Any]], share: float) -> int:
    """Rewrite the snapshot with `share` of the help texts changed: what a re-index finds after a deploy."""
    changed = entries[:: max(1, round(1 / share))]
    for entry in changed:
        entry["help"] = f"{entry['help']} (revised)"
    (home / "synthetic.json").write_text(json.dumps({"status": "success", "data": entries}))
    return len(changed)


def question_pool(entries: list[dict[str, Any]], distinct: int) -> list[str]:
    helps = sorted({e["help"].rstrip(".") for e in entries if 10 < len(e["help"]) < 120})
    random.Random(7).shuffle(helps)
    return [*SEARCH_QUESTIONS, *helps[: max(0, distinct - len(SEARCH_QUESTIONS))]]


class Load:
    """Closed-loop HTTP clients on raw keep-alive connections (a few microseconds of client work per request)."""

    def __init__(self, port: int, questions: list[str], k: int) -> None:
        self.port = port
        self.questions = questions
        self.k = k
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.empty = 0
        self.sent = 0

    async def client(self, number: int, keep_going: Any) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        rng = random.Random(number)
        try:
            while keep_going():
                self.sent += 1
                question = rng.choice(self.questions)
                body = json.dumps({"namespace": NAMESPACE, "question": question, "k": self.k}).encode()
                request = (
                    f"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode() + body
                started = time.perf_counter()
                writer.write(request)
                status, answer = await _response(reader)
                self.latencies.append(time.perf_counter() - started)
                if status != 200:
                    self.errors.append(f"{status} {answer[:200]!r}")
                elif not json.loads(answer)["results"]:
                    self.empty += 1
        finally:
            writer.close()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    return status, await reader.readexactly(length)


def namespace_loads(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    prefix = f'metrics_index_service_namespace_load_duration_seconds_count{{namespace="{NAMESPACE}"}}'
    return int(float(next((line.split()[-1] for line in text.splitlines() if line.startswith(prefix)), "0")))


async def drive(
    port: int, questions: list[str], clients: int, searches: int, reindex_after: float, reindex: Any, k: int
) -> dict[str, Any]:
    load = Load(port, questions, k)
    loads_before = namespace_loads(port)
    state: dict[str, Any] = {"process": None, "started": None, "finished": None, "reloaded": None}
    began = time.perf_counter()

    def keep_going() -> bool:
        return load.sent < searches or state["reloaded"] is None

    async def watch() -> None:
        while keep_going():
            await asyncio.sleep(0.05)
            if state["process"] is None and load.sent >= searches * reindex_after:
                state["process"], state["started"] = reindex(), time.perf_counter() - began
            elif state["process"] is not None and state["finished"] is None and state["process"].poll() is not None:
                if state["process"].returncode:
                    raise RuntimeError(f"the re-index failed with exit code {state['process'].returncode}")
                state["finished"] = time.perf_counter() - began
            if state["finished"] is not None and state["reloaded"] is None:
                loads = await asyncio.to_thread(namespace_loads, port)
                if loads > loads_before:
                    state["reloaded"] = time.perf_counter() - began

    await asyncio.gather(watch(), *(load.client(i, keep_going) for i in range(clients)))
    wall = time.perf_counter() - began
    latencies = sorted(load.latencies)
    return {
        "searches": len(latencies),
        "errors": len(load.errors),
        "error_samples": load.errors[:3],
        "empty_answers": load.empty,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
        "max_ms": latencies[-1] * 1000,
        "throughput_per_s": len(latencies) / wall,
        "wall_s": wall,
        "reindex_started_s": state["started"],
        "reindex_finished_s": state["finished"],
        "reload_seen_s": state["reloaded"],
    }


def cold_cli(env: dict[str, str], runs: int, pythonpath: str | None = None) -> dict[str, float]:
    """Seconds for `metrics-index search demo:node ...` as a new process: best and median of `runs` (one warm-up)."""
    env = {**env, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    seconds = []
    for run in range(runs + 1):
        started = time.perf_counter()
        done = subprocess.run([*CLI, "search", DEMO, DEMO_QUESTION, "-k", "5"], env=env, capture_output=True, cwd="/")
        if done.returncode or "node_filesystem" not in done.stdout.decode():
            raise RuntimeError(f"the CLI search failed: {done.stderr.decode()[-500:]}")
        if run:
            seconds.append(time.perf_counter() - started)
    return {"best_s": min(seconds), "median_s": statistics.median(seconds)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", type=int, default=50_000, help="size of the synthetic namespace")
    parser.add_argument("--searches", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--distinct-questions", type=int, default=1_000)
    parser.add_argument("--reindex-after", type=float, default=0.3, help="share of searches before the re-index")
    parser.add_argument("--cli-runs", type=int, default=5)
    parser.add_argument("--baseline-src", help="a checkout of an earlier version whose CLI to time beside this one")
    parser.add_argument("--home", help="keep the stores here (default: a temporary folder)")
    parser.add_argument("--json-out", help="also write the figures as JSON")
    args = parser.parse_args(argv)

    home = Path(args.home or tempfile.mkdtemp(prefix="metrics-index-serve-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    redis_port, chroma_port, service_port = free_port(), free_port(), free_port()
    processes: list[subprocess.Popen] = []
    try:
        redis_server = shutil.which("redis-server", path=SYSTEM_PATH) or "redis-server"
        processes.append(
            start([redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""], logs / "redis.log")
        )
        chroma = str(Path(sys.executable).with_name("chroma"))
        processes.append(
            start([chroma, "run", "--host", "127.0.0.1", "--port", str(chroma_port), "--path", str(home / "chroma")],
                  logs / "chroma.log")
        )  # fmt: skip
        wait_for(f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", "chroma", processes[-1])
        registry, entries = write_registry(home, args.metrics)
        env = {
            **os.environ,
            "METRICS_INDEX_HOME": str(home),
            "METRICS_INDEX_REGISTRY": str(registry),
            "METRICS_INDEX_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "METRICS_INDEX_CHROMA_HOST": "127.0.0.1",
            "METRICS_INDEX_CHROMA_PORT": str(chroma_port),
            "METRICS_INDEX_ENRICHER": "rules",
            "DAGSTER_HOME": str(home / "dagster"),
        }
        env.pop("METRICS_INDEX_URL", None)
        started = time.perf_counter()
        subprocess.run([*CLI, "index", NAMESPACE, DEMO], env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=(logs / "index.log").open("ab"))  # fmt: skip
        index_s = time.perf_counter() - started

        service = start(
            [*CLI, "serve", "--port", str(service_port), "--preload", NAMESPACE, DEMO], logs / "serve.log", env
        )
        processes.append(service)
        started = time.perf_counter()
        wait_for(f"http://127.0.0.1:{service_port}/readyz", "the service", service)
        preload_s = time.perf_counter() - started

        def reindex() -> subprocess.Popen:
            change_help_texts(home, entries, 0.01)
            return start([*CLI, "index", NAMESPACE], logs / "reindex.log", env)

        questions = question_pool(entries, args.distinct_questions)
        load = asyncio.run(
            drive(service_port, questions, args.clients, args.searches, args.reindex_after, reindex, args.k)
        )
        served_env = {**env, "METRICS_INDEX_URL": f"http://127.0.0.1:{service_port}"}
        cli = {"this CLI, through the service (METRICS_INDEX_URL)": cold_cli(served_env, args.cli_runs)}
        cli["this CLI, against the stores"] = cold_cli(env, args.cli_runs)
        if args.baseline_src:
            cli["baseline CLI (--baseline-src), against the stores"] = cold_cli(env, args.cli_runs, args.baseline_src)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(30)
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)

    figures = {"metrics": args.metrics, "clients": args.clients, "questions": len(questions), "index_s": index_s,
               "service_start_s": preload_s, "load": load, "cold_cli": cli}  # fmt: skip
    print(report(figures))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=2))
    return 0 if load["errors"] == 0 and load["empty_answers"] == 0 else 1


def report(figures: dict[str, Any]) -> str:
    load = figures["load"]
    lines = [
        f"namespace: {figures['metrics']:,} synthetic metrics (+ demo:node), indexed in {figures['index_s']:.1f} s; "
        f"service ready with both loaded in {figures['service_start_s']:.1f} s",
        f"load: {figures['clients']} concurrent clients, {load['searches']:,} searches over "
        f"{figures['questions']:,} distinct questions, k=10",
        f"re-index (1% of help texts changed): started at {load['reindex_started_s']:.1f} s, finished at "
        f"{load['reindex_finished_s']:.1f} s, new revision serving from {load['reload_seen_s']:.1f} s "
        f"(run: {load['wall_s']:.1f} s)",
        "",
        "| searches | errors | empty answers | p50 (ms) | p99 (ms) | max (ms) | searches/s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {load['searches']:,} | {load['errors']} | {load['empty_answers']} | {load['p50_ms']:.1f} | "
        f"{load['p99_ms']:.1f} | {load['max_ms']:.1f} | {load['throughput_per_s']:.0f} |",
        "",
        f'cold `metrics-index search {DEMO} "{DEMO_QUESTION}"` (new process each run):',
        "",
        "| CLI | best (s) | median (s) |",
        "|---|---:|---:|",
        *(f"| {name} | {t['best_s']:.2f} | {t['median_s']:.2f} |" for name, t in figures["cold_cli"].items()),
    ]
    if load["error_samples"]:
        lines += ["", "errors, first ones:", *load["error_samples"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
