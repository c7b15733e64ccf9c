"""Does preferring metrics that carry the label a question asks for ("errors by status code", "per CPU mode") help
search? The measure behind metrics_index/label_preference.py.

    python bench/label_search.py     # bench/queries/labels.jsonl, the demo dev and held-out sets, the mysqld corpus

Indexes each namespace twice with rules enrichment: without label names (search has no label to prefer: the
baseline, ours as it was) and with each metric's label names from its series snapshot (the product): the demo
namespaces from the bundled registry and series snapshot, `corpus:mysqld` from bench/corpora/mysqld.json and the
real series saved beside it (bench/corpora/mysqld.series.json.gz). Ranks every question with the baseline,
with the baseline re-ranked by `prefer_labelled` at several weights, and with the product's `search`, and prints
recall@1/5/10 and MRR per question file. The label questions (labels.jsonl) were written before any ranking was
looked at; the corpus questions were written by another engineer before any tuning.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence

import chromadb
import pandas as pd
from search_quality import (
    CORPUS_DIR,
    DEV_SETS,
    ROOT,
    Query,
    corpus_sources,
    figures,
    labelled_metadata,
    read_queries,
    reciprocal_rank,
)

from metrics_index.embeddings import get_embedder
from metrics_index.enrichment.incremental import enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.label_preference import DEPTH, WEIGHT, prefer_labelled, wanted_labels, with_label_columns
from metrics_index.resources import PrometheusResource
from metrics_index.search import search
from metrics_index.sources import RawMetric
from metrics_index.sources.labels import with_labels
from metrics_index.sources.prometheus import fetch_raw_metadata
from metrics_index.stores.semantic_index import SemanticIndex

WEIGHTS = (0.05, 0.1, WEIGHT, 0.4)
LABEL_QUESTIONS = ROOT / "bench" / "queries" / "labels.jsonl"
MYSQLD = "corpus:mysqld"
Ranker = Callable[[str, str], list[str]]


def labelled_raw(namespace: str) -> pd.DataFrame:
    """The namespace's raw metadata with its label schemas, from its metadata and series snapshots."""
    if namespace == MYSQLD:
        source = corpus_sources(CORPUS_DIR)[MYSQLD]
        return labelled_metadata(source, fetch_raw_metadata(source))
    prometheus = PrometheusResource()
    raw = prometheus.fetch(namespace)
    return with_labels(raw, prometheus.fetch_labels(namespace, raw).schemas)


def main() -> int:
    query_sets = {path.name: read_queries(path) for path in (LABEL_QUESTIONS, *DEV_SETS)}
    query_sets["corpus mysqld"] = [q for q in read_queries(CORPUS_DIR / "questions.jsonl") if q.namespace == MYSQLD]
    namespaces = sorted({q.namespace for queries in query_sets.values() for q in queries})
    labelled: dict[str, dict[str, list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="metrics-index-bench-") as chroma_dir:
        client = chromadb.PersistentClient(path=chroma_dir)
        baseline = SemanticIndex(client, get_embedder(), "without-labels")
        product = SemanticIndex(client, get_embedder(), "with-labels")
        for namespace in namespaces:
            raw = labelled_raw(namespace)
            enriched, _ = enrich_catalog(RawMetric.from_frame(raw), RulesEnricher(), RulesEnricher())
            baseline.sync(namespace, enriched)
            enriched = with_label_columns(enriched, raw)
            product.sync(namespace, enriched)
            labelled[namespace] = dict(
                zip(enriched["metric_name"], enriched["label_names"].str.split(","), strict=True)
            )

        def reranked(weight: float) -> Ranker:
            def rank(namespace: str, question: str) -> list[str]:
                results = search(baseline, namespace, question, k=DEPTH)
                labels_of = labelled[namespace]
                order = prefer_labelled(
                    results, lambda r: r.score, lambda r: labels_of[r.metric_name], wanted_labels(question), weight
                )
                return [result.metric_name for result, _score, _hits in order]

            return rank

        rankers: dict[str, Ranker] = {
            "ours without labels (baseline)": lambda ns, q: [r.metric_name for r in search(baseline, ns, q, k=DEPTH)],
            **{f"baseline + label preference, weight {w}": reranked(w) for w in WEIGHTS},
            f"ours with labels (product, weight {WEIGHT})": lambda ns, q: [
                r.metric_name for r in search(product, ns, q, k=DEPTH)
            ],
        }
        for title, queries in query_sets.items():
            print_table(title, queries, rankers, labelled)
    return 0


def print_table(
    title: str, queries: Sequence[Query], rankers: dict[str, Ranker], labelled: dict[str, dict[str, list[str]]]
) -> None:
    asked = sum(any(wanted_labels(q.query) & set(v) for v in labelled[q.namespace].values()) for q in queries)
    print(f"#### {title} ({len(queries)} questions, {asked} ask for a label their namespace has)\n")
    print("| ranker | recall@1 | recall@5 | recall@10 | mrr |\n|---|---:|---:|---:|---:|")
    for name, ranker in rankers.items():
        values = figures([reciprocal_rank(ranker(q.namespace, q.query), q.relevant) for q in queries])
        print(
            f"| {name} | " + " | ".join(f"{values[k]:.3f}" for k in ("recall@1", "recall@5", "recall@10", "mrr")) + " |"
        )
    print()


if __name__ == "__main__":
    sys.exit(main())
