"""Calibrate the "no good match" signal (metrics_index/confidence.py): how far apart in meaning a question and a
metric's document may be before the answer is marked weak.

    python bench/weak_match.py            # the corpus and dev questions, nonsense and out-of-namespace questions
    python bench/weak_match.py --quick    # CI: two services, a few questions; correctness only

Every namespace is indexed the way the assets do it (rules enrichment, documents embedded into an embedded Chroma
in a temporary folder) and every question is asked through `metrics_index.search.search`, the function the CLI,
the service and the MCP server call, for its top 10. A search raises the alarm ("no good match") when every one
of its 10 results is weak: cosine similarity below the threshold and not named by the question.

- Answerable questions (their namespace has the answer): bench/corpora/questions.jsonl (the corpus services) and
  the demo dev sets (bench/queries/heldout.jsonl, ../shared/eval/dev_queries.jsonl). An alarm on one is a false
  alarm. Also counted: the relevant metric itself marked weak while in the top 10.
- Questions with no good answer: bench/queries/no_match.jsonl, written before any ranking was looked at: nonsense
  ("xyzzy qwerty", "banana bread recipe") and out-of-namespace questions (a BGP question asked of a mail server).
  No alarm on one is a miss.

The threshold is chosen on the corpus questions alone: the highest one whose false-alarm rate stays at or below
--max-false-alarms (a weak mark on a good answer makes a program drop it, which costs more than a missed warning).
The dev sets, other services, then say how it holds up; the miss rates are reported, never tuned for.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import chromadb
import numpy as np
from search_quality import CORPUS_DIR, DEV_SETS, ROOT, Query, corpus_sources, enrich, read_queries

from metrics_index.confidence import WEAK_BELOW
from metrics_index.embeddings import get_embedder
from metrics_index.namespaces import load_registry
from metrics_index.search import NamespaceCorpus, load_corpus, query_text, search, signals
from metrics_index.sources.prometheus import fetch_raw_metadata
from metrics_index.stores.semantic_index import SemanticIndex

NO_MATCH = ROOT / "bench" / "queries" / "no_match.jsonl"
K = 10
GROUPS = ("corpus", "dev", "nonsense", "out-of-namespace")
THRESHOLDS = np.round(np.arange(0.05, 0.701, 0.01), 2)


@dataclass(frozen=True)
class Asked:
    """One question's top results as the threshold sees them."""

    group: str  # corpus, dev, nonsense, out-of-namespace
    query: Query
    similarities: np.ndarray  # of the top K, best first
    named: np.ndarray  # whether the question names each result (exact name or prefix): never weak
    relevant_at: int | None  # position of the first relevant result in the top K

    def alarm(self, threshold: float) -> bool:
        return bool(np.all((self.similarities < threshold) & ~self.named))

    def relevant_weak(self, threshold: float) -> bool:
        at = self.relevant_at
        return at is not None and bool(self.similarities[at] < threshold and not self.named[at])


def read_no_match(path: Path) -> list[tuple[str, Query]]:
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(item["kind"], Query(item["namespace"], item["query"], frozenset())) for item in items]


def ask(index: SemanticIndex, corpora: dict[str, NamespaceCorpus], group: str, query: Query) -> Asked:
    results = search(index, query.namespace, query.query, k=K)
    corpus = corpora[query.namespace]
    vector = index.embedder.embed([query_text(corpus, query.query)])[0]
    pinned = {corpus.names[doc] for docs in signals(corpus, query.query, vector).pinned for doc in docs}
    names = [r.metric_name for r in results]
    return Asked(
        group,
        query,
        np.array([r.similarity for r in results]),
        np.array([name in pinned for name in names], dtype=bool),
        next((i for i, name in enumerate(names) if name in query.relevant), None),
    )


def rate(flags: Sequence[bool]) -> str:
    return f"{sum(flags)}/{len(flags)} ({(sum(flags) / len(flags) if flags else 0):.1%})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR)
    parser.add_argument("--max-false-alarms", type=float, default=0.02, help="on the corpus questions (default 2%%)")
    parser.add_argument("--quick", action="store_true", help="two services, a few questions (CI)")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    corpus_questions = read_queries(args.corpus / "questions.jsonl")
    dev_questions = [q for path in DEV_SETS if path.exists() for q in read_queries(path)]
    no_match = read_no_match(NO_MATCH)
    if args.quick:
        keep = sorted({q.namespace for q in corpus_questions})[:2]
        corpus_questions = [q for q in corpus_questions if q.namespace in keep][:6]
        dev_questions = [q for q in dev_questions if q.namespace == "demo:node"][:3]
        no_match = [(kind, q) for kind, q in no_match if q.namespace in {*keep, "demo:node"}][:6]
    groups = [
        *(("corpus", q) for q in corpus_questions),
        *(("dev", q) for q in dev_questions),
        *no_match,
    ]
    registry = load_registry()
    sources = {**registry.sources, **corpus_sources(args.corpus)}
    needed = sorted({q.namespace for _group, q in groups})
    missing = [ns for ns in needed if ns not in sources]
    if missing:
        raise SystemExit(f"questions name namespaces with no snapshot: {missing}")

    embedder = get_embedder()
    with tempfile.TemporaryDirectory(prefix="metrics-index-weak-") as folder:
        index = SemanticIndex(chromadb.PersistentClient(path=folder), embedder, "weak-match")
        for namespace in needed:
            frame, _fallbacks = enrich(fetch_raw_metadata(sources[namespace]), None, "")
            index.sync(namespace, frame)
        corpora = {namespace: load_corpus(index, namespace) for namespace in needed}
        asked = [ask(index, corpora, group, query) for group, query in groups]
    by_group = {g: [a for a in asked if a.group == g] for g in GROUPS}
    counts = ", ".join(f"{group} {len(items)}" for group, items in by_group.items())
    print(
        f"{len(needed)} namespaces, {len(asked)} questions ({counts}), embeddings {embedder.model_id}, "
        f"top {K}: {time.perf_counter() - started:.1f} s"
    )
    header = ("false alarms: corpus", "dev", "missed: nonsense", "out-of-namespace")
    print(f"\n{'threshold':>9}  {header[0]:>22}  {header[1]:>16}  {header[2]:>18}  {header[3]:>18}")
    for threshold in THRESHOLDS[::5]:
        print(
            f"{threshold:>9.2f}  {rate([a.alarm(threshold) for a in by_group['corpus']]):>22}  "
            f"{rate([a.alarm(threshold) for a in by_group['dev']]):>16}  "
            f"{rate([not a.alarm(threshold) for a in by_group['nonsense']]):>18}  "
            f"{rate([not a.alarm(threshold) for a in by_group['out-of-namespace']]):>18}"
        )
    allowed = [t for t in THRESHOLDS if np.mean([a.alarm(t) for a in by_group["corpus"]]) <= args.max_false_alarms]
    chosen = float(max(allowed)) if allowed else float(THRESHOLDS[0])
    print(f"\nchosen on the corpus questions (false alarms <= {args.max_false_alarms:.0%}): {chosen:.2f}")
    for label, threshold in (("chosen", chosen), ("WEAK_BELOW (confidence.py)", WEAK_BELOW)):
        print(f"\n{label} = {threshold:.2f}")
        for group in ("corpus", "dev"):
            found = [a for a in by_group[group] if a.relevant_at is not None]
            print(
                f"  {group:<17} false alarms {rate([a.alarm(threshold) for a in by_group[group]])}; "
                f"relevant metric in the top {K} but marked weak {rate([a.relevant_weak(threshold) for a in found])}"
            )
        for group in ("nonsense", "out-of-namespace"):
            print(f"  {group:<17} missed (no alarm) {rate([not a.alarm(threshold) for a in by_group[group]])}")
    if not args.quick and abs(chosen - WEAK_BELOW) > 1e-9:
        print(f"\nconfidence.WEAK_BELOW is {WEAK_BELOW:.2f}; this calibration chooses {chosen:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
