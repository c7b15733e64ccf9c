"""Search quality: recall@1/5/10 and MRR of this project's search against three baselines, side by side.

    python bench/search_quality.py ../shared/eval/dev_queries.jsonl bench/queries/heldout.jsonl

Indexes the bundled snapshot's demo namespaces (the registry in metrics_index/data/namespaces.yaml) with
rule-based enrichment into an embedded Chroma in a temporary directory, then ranks every query with:
- bm25: BM25 (bm25s, its own tokenizer and English stop words) over the name's words and the help text;
- fuzzy: rapidfuzz WRatio of the question against each name (what metric explorers do);
- dense-help: MiniLM embeddings of the raw help text only (the original indexer's documents);
- ours: metrics_index.search.search (hybrid, on the enriched documents);
and two ablations of ours (its BM25 rankers only, its dense ranker only). MRR counts the first relevant
metric in the top 10. Nothing here knows the queries' answers except the scoring.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import bm25s
import chromadb
import numpy as np
from rapidfuzz import fuzz, process

from metrics_index.embeddings import Embedder, get_embedder
from metrics_index.enrichment.incremental import enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.namespaces import load_registry
from metrics_index.search import NamespaceCorpus, load_corpus, rank, search
from metrics_index.sources import RawMetric
from metrics_index.sources.prometheus import fetch_raw_metadata
from metrics_index.stores.semantic_index import SemanticIndex
from metrics_index.text import split_name

CUTOFFS = (1, 5, 10)
Ranker = Callable[[str, str], list[str]]


@dataclass(frozen=True)
class Query:
    namespace: str
    query: str
    relevant: frozenset[str]


@dataclass
class Scores:
    """Per-query reciprocal ranks and hits, summarised on demand."""

    reciprocal_ranks: list[float] = field(default_factory=list)
    hits: dict[int, list[bool]] = field(default_factory=lambda: {k: [] for k in CUTOFFS})

    def add(self, ranked: Sequence[str], relevant: frozenset[str]) -> None:
        first = next((i for i, name in enumerate(ranked[: max(CUTOFFS)], 1) if name in relevant), None)
        self.reciprocal_ranks.append(1.0 / first if first else 0.0)
        for k in CUTOFFS:
            self.hits[k].append(first is not None and first <= k)

    def summary(self) -> dict[str, float]:
        count = max(len(self.reciprocal_ranks), 1)
        figures = {f"recall@{k}": sum(self.hits[k]) / count for k in CUTOFFS}
        figures["mrr"] = sum(self.reciprocal_ranks) / count
        return figures


def read_queries(path: str | Path) -> list[Query]:
    queries = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            queries.append(Query(item["namespace"], item["query"], frozenset(item["relevant"])))
    return queries


def index_demo_namespaces(index: SemanticIndex, namespaces: Sequence[str], registry_path: str | None = None) -> dict:
    """Fetch each namespace from the bundled snapshot, enrich with rules, sync into the index.
    Returns the raw frames by namespace (the baselines rank the raw help text)."""
    registry = load_registry(registry_path)
    raw_frames = {}
    for namespace in namespaces:
        raw = fetch_raw_metadata(registry.sources[namespace])
        enriched, _report = enrich_catalog(RawMetric.from_frame(raw), RulesEnricher(), RulesEnricher())
        index.sync(namespace, enriched)
        raw_frames[namespace] = raw
    return raw_frames


class Baselines:
    """The three baseline rankers, each over one namespace's raw metadata."""

    def __init__(self, raw_frames: dict, embedder: Embedder) -> None:
        self.embedder = embedder
        self.names = {ns: list(frame["metric_name"]) for ns, frame in raw_frames.items()}
        self.bm25 = {}
        self.help_vectors = {}
        for ns, frame in raw_frames.items():
            texts = [f"{' '.join(split_name(n))} {h}" for n, h in zip(frame["metric_name"], frame["help"], strict=True)]
            retriever = bm25s.BM25()
            retriever.index(_bm25_tokens(texts), show_progress=False)
            self.bm25[ns] = retriever
            self.help_vectors[ns] = embedder.embed(
                [h or n for n, h in zip(frame["metric_name"], frame["help"], strict=True)]
            )

    def bm25_ranker(self, namespace: str, question: str) -> list[str]:
        scores = self.bm25[namespace].get_scores(_bm25_tokens([question])[0])
        return _top_names(self.names[namespace], scores)

    def fuzzy_ranker(self, namespace: str, question: str) -> list[str]:
        found = process.extract(
            question, self.names[namespace], scorer=fuzz.WRatio, processor=_fuzzy_processor, limit=max(CUTOFFS)
        )
        return [name for name, _score, _index in found]

    def dense_help_ranker(self, namespace: str, question: str) -> list[str]:
        scores = self.help_vectors[namespace] @ self.embedder.embed([question])[0]
        return _top_names(self.names[namespace], scores)


def _bm25_tokens(texts: list[str]) -> list[list[str]]:
    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


def _fuzzy_processor(text: str) -> str:
    return text.replace("_", " ").lower()


def _top_names(names: list[str], scores: np.ndarray) -> list[str]:
    order = sorted(range(len(names)), key=lambda i: (-float(scores[i]), i))[: max(CUTOFFS)]
    return [names[i] for i in order]


def our_rankers(index: SemanticIndex, namespaces: Sequence[str]) -> dict[str, Ranker]:
    corpora: dict[str, NamespaceCorpus] = {ns: load_corpus(index, ns) for ns in namespaces}

    def ablation(weights: dict[str, float]) -> Ranker:
        def ranker(namespace: str, question: str) -> list[str]:
            vector = index.embedder.embed([question])[0]
            found = rank(corpora[namespace], question, vector, k=max(CUTOFFS), weights=weights)
            return [r.metric_name for r in found]

        return ranker

    return {
        "ours": lambda ns, q: [r.metric_name for r in search(index, ns, q, k=max(CUTOFFS))],
        "ours: bm25 only": ablation({"name": 1.0, "text": 1.0, "dense": 0.0}),
        "ours: dense only": ablation({"name": 0.0, "text": 0.0, "dense": 1.0}),
    }


def evaluate(queries: Sequence[Query], rankers: dict[str, Ranker]) -> dict[str, dict[str, dict[str, float]]]:
    """figures[ranker][namespace or 'overall'] = {recall@k..., mrr}."""
    figures = {}
    for name, ranker in rankers.items():
        per_namespace: dict[str, Scores] = {}
        overall = Scores()
        for query in queries:
            ranked = ranker(query.namespace, query.query)
            per_namespace.setdefault(query.namespace, Scores()).add(ranked, query.relevant)
            overall.add(ranked, query.relevant)
        figures[name] = {ns: s.summary() for ns, s in sorted(per_namespace.items())} | {"overall": overall.summary()}
    return figures


def misses(queries: Sequence[Query], ranker: Ranker, cutoff: int = 1) -> list[str]:
    """Queries whose first relevant metric is not within the cutoff, with what came first instead."""
    lines = []
    for query in queries:
        ranked = ranker(query.namespace, query.query)
        position = next((i for i, name in enumerate(ranked, 1) if name in query.relevant), None)
        if position is None or position > cutoff:
            lines.append(f"{query.namespace} {query.query!r}: rank {position or '>10'}, first {ranked[:1]}")
    return lines


def markdown(title: str, figures: dict[str, dict[str, dict[str, float]]], count: int) -> str:
    columns = [*(f"recall@{k}" for k in CUTOFFS), "mrr"]
    lines = [f"#### {title} ({count} queries)", "", "| ranker | " + " | ".join(columns) + " |"]
    lines.append("|---|" + "---:|" * len(columns))
    for ranker, by_ns in figures.items():
        lines.append(f"| {ranker} | " + " | ".join(f"{by_ns['overall'][c]:.3f}" for c in columns) + " |")
    namespaces = [ns for ns in next(iter(figures.values())) if ns != "overall"]
    lines += ["", "Per namespace, recall@5 / MRR:", ""]
    lines.append("| namespace | " + " | ".join(figures) + " |")
    lines.append("|---|" + "---:|" * len(figures))
    for ns in namespaces:
        cells = [f"{figures[r][ns]['recall@5']:.2f} / {figures[r][ns]['mrr']:.2f}" for r in figures]
        lines.append(f"| {ns} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("queries", nargs="+", help="query files (JSON lines: namespace, query, relevant)")
    parser.add_argument("--registry", help="namespace registry (default: the bundled demo registry)")
    parser.add_argument("--json-out", help="also write the figures as JSON to this file")
    parser.add_argument("--show-misses", action="store_true", help="list queries ours did not rank first")
    args = parser.parse_args(argv)

    query_sets = {path: read_queries(path) for path in args.queries}
    namespaces = sorted({q.namespace for queries in query_sets.values() for q in queries})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="metrics-index-bench-") as chroma_dir:
        embedder = get_embedder()
        index = SemanticIndex(chromadb.PersistentClient(path=chroma_dir), embedder, "search-quality")
        raw_frames = index_demo_namespaces(index, namespaces, args.registry)
        baselines = Baselines(raw_frames, embedder)
        rankers: dict[str, Ranker] = {
            "bm25 (name+help)": baselines.bm25_ranker,
            "fuzzy name": baselines.fuzzy_ranker,
            "dense (help only)": baselines.dense_help_ranker,
            **our_rankers(index, namespaces),
        }
        print(
            f"indexed {sum(len(f) for f in raw_frames.values())} metrics in {len(namespaces)} namespaces "
            f"({time.perf_counter() - started:.1f} s)\n"
        )
        report = {}
        for path, queries in query_sets.items():
            figures = evaluate(queries, rankers)
            report[path] = figures
            print(markdown(Path(path).name, figures, len(queries)) + "\n")
            if args.show_misses:
                print("\n".join(misses(queries, rankers["ours"])) + "\n")
        del index
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
