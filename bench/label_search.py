"""Does preferring metrics that carry the label a question asks for ("errors by status code", "per CPU mode") help
search? The measure behind metrics_index/label_preference.py.

    cd bench && python label_search.py queries/labels.jsonl ../../shared/eval/dev_queries.jsonl queries/heldout.jsonl

Indexes the demo namespaces twice: as bench/search_quality.py does (documents without label names, so search has no
label to prefer: the baseline, ours as it was), and with each metric's label names from the bundled series
snapshot (the product). Ranks every query with the baseline, with the baseline re-ranked by `prefer_labelled` at
several weights, and with the product's `search`. The label questions (labels.jsonl) were written before any
ranking was looked at.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import chromadb
from search_quality import CUTOFFS, Ranker, evaluate, index_demo_namespaces, read_queries

from metrics_index.embeddings import get_embedder
from metrics_index.enrichment.incremental import enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.label_preference import DEPTH, WEIGHT, label_names_column, prefer_labelled, wanted_labels
from metrics_index.resources import PrometheusResource
from metrics_index.search import search
from metrics_index.sources import RawMetric
from metrics_index.sources.labels import with_labels
from metrics_index.stores.semantic_index import SemanticIndex

WEIGHTS = (0.05, 0.1, WEIGHT, 0.4)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("queries", nargs="+")
    args = parser.parse_args(argv)
    query_sets = {path: read_queries(path) for path in args.queries}
    namespaces = sorted({q.namespace for queries in query_sets.values() for q in queries})
    prometheus = PrometheusResource()
    labelled: dict[str, dict[str, list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="metrics-index-bench-") as chroma_dir:
        client = chromadb.PersistentClient(path=chroma_dir)
        baseline = SemanticIndex(client, get_embedder(), "without-labels")
        product = SemanticIndex(client, get_embedder(), "with-labels")
        raw_frames = index_demo_namespaces(baseline, namespaces)
        for namespace, raw in raw_frames.items():
            raw = with_labels(raw, prometheus.fetch_labels(namespace, raw).schemas)
            enriched, _ = enrich_catalog(RawMetric.from_frame(raw), RulesEnricher(), RulesEnricher())
            enriched["label_names"] = label_names_column(enriched.merge(raw[["metric_name", "labels"]]))
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
        for path, queries in query_sets.items():
            figures = evaluate(queries, rankers)
            asked = sum(
                any(wanted_labels(q.query) & set(labels) for labels in labelled[q.namespace].values()) for q in queries
            )
            print(f"#### {Path(path).name} ({len(queries)} queries, {asked} ask for a label of their namespace)\n")
            print("| ranker | " + " | ".join(f"recall@{k}" for k in CUTOFFS) + " | mrr |")
            print("|---|" + "---:|" * (len(CUTOFFS) + 1))
            for name, by_ns in figures.items():
                cells = [f"{by_ns['overall'][f'recall@{k}']:.3f}" for k in CUTOFFS] + [f"{by_ns['overall']['mrr']:.3f}"]
                print(f"| {name} | " + " | ".join(cells) + " |")
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
