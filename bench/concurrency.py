"""Concurrent writers and readers of one embedded home, side by side with a baseline checkout (issue 11).

    python bench/concurrency.py [--rounds 20] [--searches 10000] [--baseline e0d6630] [--timeout 600]
    # or each side and part in its own process, then one table:
    python bench/concurrency.py --side this --part concurrent --json-out this-concurrent.json  # (and so on)
    python bench/concurrency.py --table *.json

For this checkout and for the baseline (a `git archive` of another commit, run through PYTHONPATH; by default
main before the store locks), each with its own home (embedded Chroma, Parquet catalog) and a redis-server:

1. concurrent index runs: `--rounds` times, two `metrics-index index acme:node` processes started together, one
   with data A (the node job of the bundled snapshot), one with data B (a third of A's metrics deleted, the help
   of the rest reworded); then a fresh process checks the stores. A round is corrupt when that process cannot
   read a namespace (a crash, a segfault) or when Redis, the Parquet catalog and Chroma disagree, or hold a mix of
   A and B; a run still going after `--timeout` is killed and counted as a hang. A corrupt store is deleted and
   indexed again before the next round, so every round starts whole.
2. searches while re-indexing: a process warms `api.search_metrics` on acme:node, then makes `--searches`
   searches while other processes re-index the namespace back to back (B, A, B...); it counts searches that
   raised, answers that came back empty, and switches between A's and B's answers (re-indexes it followed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from metrics_index.testing.concurrency_drill import BYSTANDER, NAMESPACE, Drill
from metrics_index.testing.servers import RedisServer

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "e0d6630"  # main before the store locks and the namespace revision
DIFFERENCES = ("redis_not_raw", "raw_not_redis", "chroma_not_enriched", "enriched_not_chroma", "raw_not_enriched")


def checkout(revision: str, directory: Path) -> Path:
    """The files of `revision`, without touching this repository's worktrees."""
    directory.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


def corrupt(report: dict) -> str:
    """Why the checker's report shows a corrupt store ('' when the stores agree)."""
    if "error" in report:
        return report["error"]
    for namespace, found in report.items():
        wrong = {key: found[key] for key in (*DIFFERENCES, "duplicate_ids") if found[key]}
        if wrong:
            return f"{namespace}: {wrong}"
        if found["revised"] not in (0, found["documents"]):
            return f"{namespace}: {found['revised']} of {found['documents']} documents from B, the rest from A"
    return ""


def fresh_home(drill: Drill, redis: RedisServer, timeout: float) -> None:
    shutil.rmtree(drill.home, ignore_errors=True)
    with redis.client() as client:
        client.flushall()
    drill.prepare()
    first = drill.run("a", NAMESPACE, BYSTANDER, timeout=timeout)
    if first.code != 0:
        raise RuntimeError(f"the first index failed: {first.stderr[-2000:]}")


def concurrent_rounds(drill: Drill, redis: RedisServer, rounds: int, timeout: float) -> dict:
    figures = {"rounds": rounds, "runs failed": 0, "hangs": 0, "corrupt": 0, "stores equal": 0, "waited": 0}
    reasons: list[str] = []
    fresh_home(drill, redis, timeout)
    for round_number in range(1, rounds + 1):
        started = time.perf_counter()
        outcomes = drill.index_at_once(timeout)
        figures["hangs"] += sum(outcome.code is None for outcome in outcomes)
        figures["runs failed"] += sum(outcome.code not in (0, None) for outcome in outcomes)
        figures["waited"] += sum("another run is writing namespace" in outcome.stderr for outcome in outcomes)
        why = corrupt(drill.stores_check(timeout))
        if why:
            figures["corrupt"] += 1
            reasons.append(why)
        elif all(outcome.code == 0 for outcome in outcomes):
            figures["stores equal"] += 1
        codes = [outcome.code for outcome in outcomes]
        seconds = time.perf_counter() - started
        print(f"  round {round_number}: exit codes {codes}, {why or 'stores equal'} ({seconds:.0f} s)", flush=True)
        if why or None in codes:
            fresh_home(drill, redis, timeout)
    figures["first corruptions"] = reasons[:3]
    return figures


def searches_while_reindexing(drill: Drill, redis: RedisServer, searches: int, timeout: float) -> dict:
    fresh_home(drill, redis, timeout)
    loop = drill.search_loop(searches)
    loop.ready(timeout)
    reindexes = failed = 0
    variant = "b"
    while loop.running():
        outcome = drill.run(variant, timeout=timeout)
        reindexes += 1
        failed += outcome.code != 0
        variant = "a" if variant == "b" else "b"
    result = loop.result(timeout)
    return {**result, "re-indexes": reindexes, "re-indexes failed": failed}


PARTS = {"concurrent index runs": concurrent_rounds, "searches while re-indexing": searches_while_reindexing}


def run_side(name: str, pythonpath: str, workdir: Path, args: argparse.Namespace) -> dict:
    results = {}
    for part, drill_part in PARTS.items():
        if args.part not in ("both", part.split()[0]):
            continue
        slug = f"{name.split()[0]}-{part.split()[0]}"
        redis = RedisServer(workdir / f"{slug}-redis").start()
        drill = Drill(workdir / f"{slug}-home", redis.url, pythonpath=pythonpath, node_metrics=args.node_metrics)
        size = args.rounds if part.startswith("concurrent") else args.searches
        print(f"{name}: {part} ({size})", flush=True)
        try:
            results[part] = drill_part(drill, redis, size, args.timeout)
        finally:
            redis.stop()
    return results


def print_table(sides: dict[str, dict]) -> None:
    names = list(sides)
    print(f"\n| figure | {' | '.join(names)} |\n|---|{'---:|' * len(names)}")
    for part in PARTS:
        keys = dict.fromkeys(key for side in sides.values() for key in side.get(part, {}))
        for key in keys:
            if key not in {"first corruptions", "kinds"}:
                print(
                    f"| {part}: {key} | {' | '.join(str(sides[name].get(part, {}).get(key, '-')) for name in names)} |"
                )
    for name in names:
        for part, key in (("concurrent index runs", "first corruptions"), ("searches while re-indexing", "kinds")):
            if sides[name].get(part, {}).get(key):
                print(f"\n{name}, {part}: {json.dumps(sides[name][part][key])[:600]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--searches", type=int, default=10_000)
    parser.add_argument("--baseline", default=BASELINE, help="commit to compare with")
    parser.add_argument("--side", choices=("both", "this", "baseline"), default="both")
    parser.add_argument("--part", choices=("both", "concurrent", "searches"), default="both")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a run counts as a hang")
    parser.add_argument("--node-metrics", type=int, default=None, help="fewer metrics in A (default: all 283)")
    parser.add_argument("--json-out", type=Path, help="write the figures here")
    parser.add_argument("--table", type=Path, nargs="+", help="only print the figures of earlier --json-out files")
    args = parser.parse_args()
    if args.table:
        sides: dict[str, dict] = {}
        for path in args.table:
            for name, figures in json.loads(path.read_text()).items():
                sides.setdefault(name, {}).update(figures)
        print_table(sides)
        return
    sides = {}
    with tempfile.TemporaryDirectory(prefix="concurrency-") as temporary:
        workdir = Path(temporary)
        if args.side in ("both", "this"):
            sides["this checkout"] = run_side("this checkout", str(ROOT), workdir, args)
        if args.side in ("both", "baseline"):
            baseline = checkout(args.baseline, workdir / "baseline")
            sides[f"baseline {args.baseline}"] = run_side(f"baseline {args.baseline}", str(baseline), workdir, args)
    print_table(sides)
    if args.json_out:
        args.json_out.write_text(json.dumps(sides, indent=2))


if __name__ == "__main__":
    sys.exit(main())
