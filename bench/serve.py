"""The search service under load: 20 concurrent clients, 10,000 searches over a synthetic namespace, a re-index of
that namespace in the middle; then the cold CLI beside it.

    python bench/serve.py --home /tmp/serve-50k            # 50,000 metrics; the home is kept and reused
    python bench/serve.py --metrics 10000                  # quicker, in a temporary home
    python bench/serve.py --home H --baseline-src /path/to/old/checkout   # that checkout's service first, same home
    python bench/serve.py --home H --rate 40               # paced: 40 searches/s in all, not as fast as answered

What runs, all on 127.0.0.1: a Debian redis-server and a Chroma server (`chroma run`), which the service and the
indexer share as in a deployment (embedded Chroma is not safe across processes); `metrics-index index` builds
the synthetic namespace (bench/scale.py's generator) and the demo's `demo:node`; `metrics-index serve` answers.
With --home, the home (Chroma's files, the snapshot, the catalog) is kept: a later run's first index finds
every document unchanged and embeds nothing, so the 50k namespace is embedded once, not per run.

The clients are asyncio tasks speaking HTTP/1.1 with keep-alive. By default each sends its next search when the
last one is answered (closed loop: then the latency is mostly the queue of 20 clients before the server, and
p50 is about 20 / throughput); with --rate they send on a fixed schedule, and a search's latency counts from
its scheduled time (no coordinated omission). After a share of the searches, `metrics-index index` runs again on
the namespace with 1% of its help texts changed (those documents are re-embedded, the revision is bumped) and
the service reloads it in the background; the run goes on until the reload was seen and at least --searches
were answered. Latency is reported for all searches and split two ways: by the phase a search started in
(before the re-index, while it ran, while the service reloaded, after), and into first asks of a question
(nothing cached: the service embeds and ranks) and repeats (--repeat-share of the searches re-ask an earlier
question: answered from the service's answer cache unless the revision moved in between).

With --baseline-src, that checkout's service (on PYTHONPATH) is driven first on the same home with the same
questions and its own re-index, then this one: the two rows see the same namespace and similar machine load,
which the report gives (load average, 1 minute) beside each. Then the cold CLI: `metrics-index search demo:node
...` as new processes, against the stores and through the service (METRICS_INDEX_URL), best and median of
--cli-runs.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scale import SEARCH_QUESTIONS, synthetic_entries  # bench/ is on the path of a script run from it

from metrics_index.text import metric_words

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
    """Started in / so that `python -m` imports the package from PYTHONPATH (a baseline checkout), not from the
    folder the bench was started in."""
    return subprocess.Popen(
        argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd="/"
    )


def write_registry(home: Path, size: int) -> tuple[Path, list[dict[str, Any]]]:
    """The registry and the synthetic snapshot; a snapshot already in `home` (a kept home) is reused as it is,
    so the first index of a later run finds nothing changed."""
    snapshot = home / "synthetic.json"
    entries = json.loads(snapshot.read_text())["data"] if snapshot.exists() else synthetic_entries(size)
    if len(entries) != size:
        raise SystemExit(f"{home} holds a namespace of {len(entries):,} metrics, not {size:,}: use another --home")
    snapshot.write_text(json.dumps({"status": "success", "data": entries}))
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


QUESTION_FORMS = ("{}", "how many {}", "{} per second", "{} right now", "rate of {}", "{} by instance", "total {}")


def question_pool(entries: list[dict[str, Any]]) -> list[str]:
    """Distinct questions, shuffled: the hand-written ones, the help texts, then each metric's name words
    in a few forms (which is how people and agents ask: "bytes received by instance", "rate of ...")."""
    helps = sorted({e["help"].rstrip(".") for e in entries if 10 < len(e["help"]) < 120})
    words = [" ".join(metric_words(e["metric"])[1:]) or e["metric"] for e in entries]
    named = (form.format(w) for form in QUESTION_FORMS for w in words)
    pool = list(dict.fromkeys([*SEARCH_QUESTIONS, *helps, *named]))
    random.Random(7).shuffle(pool)
    return pool


@dataclass
class Answered:
    started: float  # seconds into the run (the scheduled time, when paced)
    seconds: float
    repeat: bool  # a question asked before in this run
    error: str = ""
    empty: bool = False


class Load:
    """HTTP clients on raw keep-alive connections (a few microseconds of client work per request): closed loop, or
    paced at `rate` searches per second in all. Each takes the next unasked question, or with `repeat_share` an
    already asked one."""

    def __init__(self, port: int, questions: list[str], k: int, rate: float, repeat_share: float) -> None:
        self.port = port
        self.questions = questions
        self.k = k
        self.rate = rate
        self.repeat_share = repeat_share
        self.asked: list[str] = []
        self.answers: list[Answered] = []
        self.sent = 0
        self.began = 0.0

    def next_question(self, rng: random.Random) -> tuple[str, bool]:
        if self.asked and (rng.random() < self.repeat_share or len(self.asked) == len(self.questions)):
            return rng.choice(self.asked), True
        self.asked.append(self.questions[len(self.asked)])
        return self.asked[-1], False

    async def client(self, number: int, clients: int, keep_going: Any) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        rng = random.Random(number)
        turn = 0
        try:
            while keep_going():
                self.sent += 1
                question, repeat = self.next_question(rng)
                body = json.dumps({"namespace": NAMESPACE, "question": question, "k": self.k}).encode()
                request = (
                    f"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode() + body
                started = time.perf_counter()
                if self.rate:
                    scheduled = self.began + (turn * clients + number) / self.rate
                    turn += 1
                    await asyncio.sleep(max(0.0, scheduled - started))
                    started = scheduled
                writer.write(request)
                status, answer = await _response(reader)
                done = Answered(started - self.began, time.perf_counter() - started, repeat)
                if status != 200:
                    done.error = f"{status} {answer[:200]!r}"
                else:
                    done.empty = not json.loads(answer)["results"]
                self.answers.append(done)
        finally:
            writer.close()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    return status, await reader.readexactly(length)


def namespace_loads(port: int) -> tuple[int, float]:
    """How many times the service loaded the namespace, and the seconds those loads took (its /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=300) as answer:
        text = answer.read().decode()
    prefix = f'metrics_index_service_namespace_load_duration_seconds_{{}}{{{{namespace="{NAMESPACE}"}}}}'

    def value(series: str) -> float:
        line = next((line for line in text.splitlines() if line.startswith(prefix.format(series))), "x 0")
        return float(line.split()[-1])

    return int(value("count")), value("sum")


PHASES = ("before the re-index", "re-index running", "service reloading", "after the reload")


async def drive(
    port: int, load: Load, clients: int, searches: int, reindex_after: float, reindex: Any
) -> dict[str, Any]:
    loads_before, seconds_before = namespace_loads(port)
    marks: dict[str, Any] = {"process": None, "started": None, "finished": None, "reloaded": None, "reload_s": None}
    load.began = time.perf_counter()
    loadavg = [os.getloadavg()[0]]

    def now() -> float:
        return time.perf_counter() - load.began

    def keep_going() -> bool:
        return load.sent < searches or marks["reloaded"] is None

    async def watch() -> None:
        while keep_going():
            await asyncio.sleep(0.05)
            if marks["process"] is None and load.sent >= searches * reindex_after:
                marks["process"], marks["started"] = reindex(), now()
            elif marks["process"] is not None and marks["finished"] is None and marks["process"].poll() is not None:
                if marks["process"].returncode:
                    raise RuntimeError(f"the re-index failed with exit code {marks['process'].returncode}")
                marks["finished"] = now()
            if marks["finished"] is not None and marks["reloaded"] is None:
                loads, seconds = await asyncio.to_thread(namespace_loads, port)
                if loads > loads_before:
                    marks["reloaded"], marks["reload_s"] = now(), seconds - seconds_before

    await asyncio.gather(watch(), *(load.client(i, clients, keep_going) for i in range(clients)))
    wall = now()
    loadavg.append(os.getloadavg()[0])
    bounds = [marks["started"], marks["finished"], marks["reloaded"]]
    phase = {name: [a for a in load.answers if _phase(a.started, bounds) == i] for i, name in enumerate(PHASES)}
    return {
        "all": summary(load.answers, wall),
        "first asks (nothing cached)": summary([a for a in load.answers if not a.repeat], wall),
        "repeats (answer cache)": summary([a for a in load.answers if a.repeat], wall),
        **{name: summary(answers, None) for name, answers in phase.items()},
        "error_samples": [a.error for a in load.answers if a.error][:3],
        "wall_s": wall,
        "loadavg_1m": loadavg,
        "reindex_started_s": marks["started"],
        "reindex_finished_s": marks["finished"],
        "reload_seen_s": marks["reloaded"],
        "reload_s": marks["reload_s"],
    }


def _phase(started: float, bounds: list[float]) -> int:
    return bisect.bisect_right(bounds, started)


def summary(answers: list[Answered], wall: float | None) -> dict[str, Any]:
    latencies = sorted(a.seconds for a in answers)
    if not latencies:
        return {"searches": 0}
    return {
        "searches": len(latencies),
        "errors": sum(bool(a.error) for a in answers),
        "empty_answers": sum(a.empty for a in answers),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
        "max_ms": latencies[-1] * 1000,
        "throughput_per_s": len(latencies) / wall if wall else None,
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
    parser.add_argument("--rate", type=float, default=0.0, help="searches per second in all (default: closed loop)")
    parser.add_argument("--repeat-share", type=float, default=0.2, help="share of searches re-asking a question")
    parser.add_argument("--reindex-after", type=float, default=0.3, help="share of searches before the re-index")
    parser.add_argument("--cli-runs", type=int, default=5)
    parser.add_argument("--baseline-src", help="a checkout of an earlier version whose service and CLI to time first")
    parser.add_argument("--home", help="keep the stores here and reuse them (default: a temporary folder)")
    parser.add_argument("--json-out", help="also write the figures as JSON")
    args = parser.parse_args(argv)

    home = Path(args.home or tempfile.mkdtemp(prefix="metrics-index-serve-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    redis_port, chroma_port = free_port(), free_port()
    processes: list[subprocess.Popen] = []
    runs: dict[str, dict[str, Any]] = {}
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
        env.pop("PYTHONPATH", None)
        started = time.perf_counter()
        subprocess.run([*CLI, "index", NAMESPACE, DEMO], env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=(logs / "index.log").open("ab"))  # fmt: skip
        index_s = time.perf_counter() - started

        def reindex() -> subprocess.Popen:
            change_help_texts(home, entries, 0.01)
            return start([*CLI, "index", NAMESPACE], logs / "reindex.log", env)

        questions = question_pool(entries)
        variants = {"baseline (--baseline-src)": args.baseline_src} if args.baseline_src else {}
        for name, source in {**variants, "this tree": None}.items():
            service_env = {**env, "PYTHONPATH": source} if source else env
            port = free_port()
            service = start([*CLI, "serve", "--port", str(port), "--preload", NAMESPACE, DEMO], logs / "serve.log",
                            service_env)  # fmt: skip
            processes.append(service)
            started = time.perf_counter()
            wait_for(f"http://127.0.0.1:{port}/readyz", "the service", service)
            load = Load(port, questions, args.k, args.rate, args.repeat_share)
            runs[name] = {"service_start_s": time.perf_counter() - started}
            runs[name] |= asyncio.run(drive(port, load, args.clients, args.searches, args.reindex_after, reindex))
            if source is None:
                served_env = {**env, "METRICS_INDEX_URL": f"http://127.0.0.1:{port}"}
                cli = {"this CLI, through the service (METRICS_INDEX_URL)": cold_cli(served_env, args.cli_runs)}
            service.terminate()
            service.wait(30)
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

    figures = {"metrics": args.metrics, "clients": args.clients, "rate": args.rate, "questions": len(questions),
               "repeat_share": args.repeat_share, "index_s": index_s, "runs": runs, "cold_cli": cli}  # fmt: skip
    print(report(figures))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=2))
    failed = any(run["all"]["errors"] or run["all"]["empty_answers"] for run in runs.values())
    return 1 if failed else 0


ROWS = ("all", "first asks (nothing cached)", "repeats (answer cache)", *PHASES)


def report(figures: dict[str, Any]) -> str:
    mode = f"paced at {figures['rate']:g} searches/s in all" if figures["rate"] else "closed loop (no think time)"
    lines = [
        f"namespace: {figures['metrics']:,} synthetic metrics (+ demo:node), first index of this run "
        f"{figures['index_s']:.1f} s",
        f"load: {figures['clients']} concurrent clients, {mode}, k=10; {figures['repeat_share']:.0%} of searches "
        f"re-ask an earlier question, the others ask one for the first time (pool: {figures['questions']:,})",
    ]
    for name, run in figures["runs"].items():
        lines += [
            "",
            f"### {name}: service ready (namespaces loaded) in {run['service_start_s']:.1f} s; load average (1 min) "
            f"{run['loadavg_1m'][0]:.1f} at the start, {run['loadavg_1m'][1]:.1f} at the end",
            f"re-index (1% of help texts changed): {run['reindex_started_s']:.1f}-{run['reindex_finished_s']:.1f} s; "
            f"the service's reload took {run['reload_s']:.1f} s and was serving at {run['reload_seen_s']:.1f} s "
            f"(run: {run['wall_s']:.1f} s)",
            "",
            "| searches | count | errors | empty answers | p50 (ms) | p99 (ms) | max (ms) | searches/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in ROWS:
            f = run[row]
            if not f["searches"]:
                lines.append(f"| {row} | 0 | | | | | | |")
                continue
            rate = f"{f['throughput_per_s']:.0f}" if f["throughput_per_s"] else ""
            lines.append(
                f"| {row} | {f['searches']:,} | {f['errors']} | {f['empty_answers']} | {f['p50_ms']:.1f} | "
                f"{f['p99_ms']:.1f} | {f['max_ms']:.1f} | {rate} |"
            )
        if run["error_samples"]:
            lines += ["", "errors, first ones:", *run["error_samples"]]
    lines += [
        "",
        f'cold `metrics-index search {DEMO} "{DEMO_QUESTION}"` (new process each run):',
        "",
        "| CLI | best (s) | median (s) |",
        "|---|---:|---:|",
        *(f"| {name} | {t['best_s']:.2f} | {t['median_s']:.2f} |" for name, t in figures["cold_cli"].items()),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
