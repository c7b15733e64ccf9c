"""Do two commits rank alike? The top 10 of every question of the search corpus and the dev sets, side by side.

    python bench/same_rankings.py --baseline main          # this tree against main, one run
    python bench/same_rankings.py --json-out top10.json    # this tree's lists only

For changes that must not move a ranking (speed work): each tree indexes the questions' namespaces the way
the assets do (rules enrichment, its own embedder and SemanticIndex.sync into an embedded Chroma in a temporary
folder), then answers every question through `metrics_index.search.search`, the path users take. The lists
are compared name by name (the exit status is 1 when any list differs) and score by score (the largest
change is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import exported_tree  # noqa: E402  (bench/ is not a package)
from search_quality import CORPUS_DIR, DEV_SETS, corpus_sources, read_queries  # noqa: E402

TOP = 10


def top_lists(corpus_dir: Path, dev_sets: Sequence[Path]) -> dict[str, list[list[Any]]]:
    """`namespace | question` -> [[metric, score], ...], best first, from the `metrics_index` on sys.path."""
    import chromadb

    from metrics_index.embeddings import get_embedder
    from metrics_index.enrichment.incremental import enrich_catalog
    from metrics_index.enrichment.rules import RulesEnricher
    from metrics_index.namespaces import load_registry
    from metrics_index.search import search
    from metrics_index.sources import RawMetric
    from metrics_index.sources.prometheus import fetch_raw_metadata
    from metrics_index.stores.semantic_index import SemanticIndex

    questions = [q for path in (corpus_dir / "questions.jsonl", *dev_sets) if path.exists() for q in read_queries(path)]
    sources = corpus_sources(corpus_dir) | load_registry().sources
    answers: dict[str, list[list[Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="metrics-index-rankings-") as folder:
        index = SemanticIndex(chromadb.PersistentClient(path=folder), get_embedder(), "rankings")
        for namespace in sorted({q.namespace for q in questions}):
            raw = fetch_raw_metadata(sources[namespace])
            frame, _ = enrich_catalog(RawMetric.from_frame(raw), RulesEnricher(), RulesEnricher(), None)
            index.sync(namespace, frame)
        for q in questions:
            results = search(index, q.namespace, q.query, k=TOP)
            answers[f"{q.namespace} | {q.query}"] = [[r.metric_name, r.score] for r in results]
    return answers


def in_tree(tree: Path, corpus: Path, extra: Sequence[Path]) -> dict[str, list[list[Any]]]:
    """`top_lists` computed by `tree`'s metrics_index, in a fresh interpreter."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [
            sys.executable,
            __file__,
            "--json-out",
            out.name,
            "--corpus",
            str(corpus),
            "--extra",
            *map(str, extra),
        ]
        subprocess.run(command, check=True, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)})
        return json.loads(Path(out.name).read_text())


def differences(before: dict[str, list[list[Any]]], after: dict[str, list[list[Any]]]) -> tuple[list[str], float]:
    """One line per question whose list of names differs (or that only one side asked), and the largest change
    of a score among the lists whose names agree (float32 sums in another order move the 4th decimal)."""
    lines, drift = [], 0.0
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old is None or new is None or [name for name, _ in old] != [name for name, _ in new]:
            lines.append(f"{key}\n  before: {old}\n  after:  {new}")
        else:
            drift = max([drift, *(abs(a[1] - b[1]) for a, b in zip(old, new, strict=True))])
    return lines, drift


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="compare with this commit's rankings (e.g. main, HEAD~1)")
    parser.add_argument("--json-out", help="write this tree's lists as JSON to this file")
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR, help="snapshots and questions.jsonl")
    parser.add_argument("--extra", nargs="*", type=Path, default=list(DEV_SETS), help="dev question sets")
    args = parser.parse_args(argv)
    if not args.baseline:
        answers = top_lists(args.corpus, args.extra)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(answers, indent=1))
        print(f"{len(answers)} questions ranked")
        return 0
    with exported_tree(args.baseline) as tree:
        before = in_tree(tree, args.corpus, args.extra)
    after = in_tree(ROOT, args.corpus, args.extra)
    changed, drift = differences(before, after)
    print("\n".join(changed))
    print(
        f"{len(before)} questions: {len(changed)} top-{TOP} lists differ between {args.baseline} and this tree; "
        f"the scores of the others by at most {drift:.4f}"
    )
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
