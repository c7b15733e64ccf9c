"""Hybrid metric search: lexical BM25 on names and documents, dense similarity, rank fusion.

A metric is found three ways, each strong where another is weak:
- BM25 over the name's words (`node_network_transmit_bytes_total` -> node network transmit bytes total,
  abbreviations spelled out): precise when the question uses the metric's own words;
- BM25 over the whole document text (name words, description, category, signal, meter type, unit);
- cosine similarity of sentence embeddings: finds "bytes sent" for `transmit`.
Their rankings are merged by weighted reciprocal-rank fusion. A question that is, or starts, a metric
name puts those metrics first whatever the fusion says. Everything is scoped to one namespace.

The namespace's documents and vectors are read from the semantic index once and kept in memory with their
BM25 indexes, so a warm search costs one query embedding and a few vector operations. The cache is checked
against a cheap stamp of the store and rebuilt when the namespace may have been re-synced.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import bm25s
import numpy as np

from metrics_index.enrichment.rules import unit_of
from metrics_index.stores.semantic_index import SemanticIndex
from metrics_index.text import search_terms, term_words

# Reciprocal-rank fusion: score = sum(weight / (RRF_K + rank)) over the rankers that saw the metric.
# Dense similarity over the enriched documents is the strongest single ranker (bench/RESULTS.md), so it
# weighs more than the two lexical rankers together; they decide between close semantic candidates.
RRF_K = 20
RANKER_WEIGHTS = {"name": 0.5, "text": 0.5, "dense": 1.5}
DEPTH = 100  # how deep each ranker's list is read for fusion
SEMANTIC_EXPLAIN_RANK = 10  # "semantic" is given as a reason when the dense ranker put the metric this high
REMOTE_REVALIDATE_SECONDS = 300.0  # a Chroma server has no cheap change stamp: re-read at most this often
JSON_DESCRIPTION_CHARS = 160
MAX_CACHED_NAMESPACES = 16  # a 50k-metric namespace holds about 150 MB of vectors and indexes

# The metadata a result or an explanation needs; the rest of a document's metadata is not kept in memory.
KEPT_FIELDS = ("type", "unit", "description", "category", "subcategory", "golden_signal_type", "meter_type")
EXPLAIN_FIELDS = {
    "description": "description",
    "category": "category",
    "subcategory": "category",
    "golden_signal_type": "golden_signal",
    "meter_type": "meter_type",
    "unit": "unit",
}
_NAME_TOKEN = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


@dataclass
class SearchResult:
    metric_name: str
    score: float
    type: str
    unit: str
    description: str
    matched: list[str] = field(default_factory=list)


@dataclass
class NamespaceCorpus:
    """One namespace's documents, ready to rank: metadata rows, unit vectors, and two BM25 indexes."""

    names: list[str]
    rows: list[dict[str, str]]
    vectors: np.ndarray
    name_index: bm25s.BM25
    text_index: bm25s.BM25
    position: dict[str, int]
    by_lower_name: list[tuple[str, int]]

    @classmethod
    def build(
        cls, names: Sequence[str], documents: Sequence[str], rows: Sequence[Mapping[str, Any]], vectors: Any
    ) -> NamespaceCorpus:
        """Index the documents in name order, so that equal scores always rank alphabetically."""
        order = sorted(range(len(names)), key=lambda i: names[i])
        names = [names[i] for i in order]
        documents = [documents[i] for i in order]
        matrix = np.asarray(vectors, dtype=np.float32)[order]
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return cls(
            names=names,
            rows=[{k: str(rows[i].get(k) or "") for k in KEPT_FIELDS} for i in order],
            vectors=matrix / np.clip(norms, 1e-12, None),
            name_index=_bm25([search_terms(name) for name in names]),
            text_index=_bm25([search_terms(doc) for doc in documents]),
            position={name: i for i, name in enumerate(names)},
            by_lower_name=sorted((name.lower(), i) for i, name in enumerate(names)),
        )


def _bm25(corpus: list[list[str]]) -> bm25s.BM25:
    index = bm25s.BM25()
    index.index([terms or [""] for terms in corpus], show_progress=False)
    return index


def load_corpus(index: SemanticIndex, namespace: str) -> NamespaceCorpus | None:
    """Read every document of the namespace, with metadata and embeddings (None when it has none).

    Read in pages by id (SemanticIndex.pages), which keeps Chroma's read buffers small.
    """
    names: list[str] = []
    documents: list[str] = []
    rows: list[dict] = []
    vectors: list[np.ndarray] = []
    for page in index.pages(namespace, ["documents", "metadatas", "embeddings"]):
        for metadata, document in zip(page["metadatas"], page["documents"], strict=True):
            names.append(metadata["metric_name"])
            documents.append(document or "")
            rows.append(metadata)
        vectors.append(np.asarray(page["embeddings"], dtype=np.float32))
    if not names:
        return None
    return NamespaceCorpus.build(names, documents, rows, np.concatenate(vectors))


class _CorpusCache:
    """Namespace corpora kept between searches, rebuilt when the store's stamp changes; the least
    recently searched namespaces are dropped beyond MAX_CACHED_NAMESPACES."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[Any, NamespaceCorpus | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, index: SemanticIndex, namespace: str) -> NamespaceCorpus | None:
        key = (str(index.collection.id), namespace)
        stamp = store_stamp(index)
        with self._lock:
            cached = self._entries.get(key)
            if cached is None or cached[0] != stamp:
                cached = (stamp, load_corpus(index, namespace))
            self._entries[key] = cached
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_CACHED_NAMESPACES:
                self._entries.popitem(last=False)
            return cached[1]


_CACHE = _CorpusCache()


def store_stamp(index: SemanticIndex) -> Any:
    """Changes whenever the store may have changed. Embedded Chroma writes its SQLite file on every
    upsert or delete (reads leave it alone), so its size and mtime are an exact, microsecond check.
    A Chroma server offers no such check: its collection size plus a time window stand in."""
    settings = index.client.get_settings()
    if settings.is_persistent and settings.persist_directory:
        stat = os.stat(os.path.join(settings.persist_directory, "chroma.sqlite3"))
        return ("file", stat.st_size, stat.st_mtime_ns)
    return ("remote", index.collection.count(), int(time.monotonic() // REMOTE_REVALIDATE_SECONDS))


def search(
    index: SemanticIndex, namespace: str, question: str, k: int = 10, explain: bool = False
) -> list[SearchResult]:
    """The k metrics of `namespace` that best answer `question`, best first."""
    corpus = _CACHE.get(index, namespace)
    if corpus is None or not question.strip():
        return []
    query_vector = index.embedder.embed([question])[0]
    return rank(corpus, question, query_vector, k=k, explain=explain)


def rank(
    corpus: NamespaceCorpus,
    question: str,
    query_vector: np.ndarray,
    k: int = 10,
    explain: bool = False,
    weights: Mapping[str, float] = RANKER_WEIGHTS,
) -> list[SearchResult]:
    """Fuse the three rankings (a ranker of weight 0 is left out), then put exact and prefix name
    matches first."""
    terms = search_terms(question)
    rankings = {
        "name": _top(corpus.name_index.get_scores(terms) if terms else None),
        "text": _top(corpus.text_index.get_scores(terms) if terms else None),
        "dense": _top(corpus.vectors @ np.asarray(query_vector, dtype=np.float32)),
    }
    fused: dict[int, float] = {}
    for ranker, order in rankings.items():
        weight = weights.get(ranker, 0.0)
        for rank_position, doc in enumerate(order):
            fused[doc] = fused.get(doc, 0.0) + weight / (RRF_K + rank_position + 1)
    best_possible = sum(weights.values()) / (RRF_K + 1)
    scores = {doc: score / best_possible for doc, score in fused.items()}

    pinned = _name_matches(corpus, question)
    for boost, docs in enumerate(reversed(pinned), start=1):
        for doc in docs:
            scores[doc] = float(boost) + scores.get(doc, 0.0)
    order = sorted(scores, key=lambda doc: (-scores[doc], doc))[:k]

    dense_rank = {doc: i for i, doc in enumerate(rankings["dense"][:SEMANTIC_EXPLAIN_RANK])}
    labels = term_words(question) if explain else {}
    pinned_reason = {
        doc: reason for reason, docs in zip(("exact name", "name prefix"), pinned, strict=True) for doc in docs
    }
    results = []
    for doc in order:
        row = corpus.rows[doc]
        matched = _reasons(corpus, doc, labels, doc in dense_rank, pinned_reason.get(doc)) if explain else []
        results.append(
            SearchResult(
                metric_name=corpus.names[doc],
                score=round(min(scores[doc], 1.0), 4),
                type=row.get("type", ""),
                unit=row.get("unit") or unit_of(corpus.names[doc]),
                description=row.get("description", ""),
                matched=matched,
            )
        )
    return results


def _top(scores: np.ndarray | None) -> list[int]:
    """Indexes of the DEPTH highest positive scores, best first (ties by index, so results are stable)."""
    if scores is None or not len(scores):
        return []
    depth = min(DEPTH, len(scores))
    candidates = np.argpartition(-scores, depth - 1)[:depth]
    ordered = sorted(candidates.tolist(), key=lambda i: (-float(scores[i]), i))
    return [i for i in ordered if scores[i] > 0]


def _name_matches(corpus: NamespaceCorpus, question: str) -> tuple[list[int], list[int]]:
    """Metrics named exactly by a token of the question, then (for a one-token question) those whose
    name starts with it."""
    tokens = _NAME_TOKEN.findall(question)
    exact = [corpus.position[t] for t in dict.fromkeys(tokens) if t in corpus.position]
    prefix: list[int] = []
    if len(tokens) == 1 and len(question.split()) == 1 and len(tokens[0]) >= 2:
        start = tokens[0].lower()
        at = bisect.bisect_left(corpus.by_lower_name, (start, -1))
        for name, i in corpus.by_lower_name[at:]:
            if not name.startswith(start):
                break
            if i not in exact:
                prefix.append(i)
    return exact, prefix


def _reasons(
    corpus: NamespaceCorpus, doc: int, labels: Mapping[str, str], semantic: bool, pinned: str | None
) -> list[str]:
    """Which fields share words with the question (and the question's words), plus name and meaning matches."""
    reasons = [pinned] if pinned else []
    fields = {"name": corpus.names[doc]} | {column: corpus.rows[doc].get(column, "") for column in EXPLAIN_FIELDS}
    by_field: dict[str, set[str]] = {}
    for column, text in fields.items():
        hits = labels.keys() & set(search_terms(text))
        if hits:
            by_field.setdefault(EXPLAIN_FIELDS.get(column, column), set()).update(labels[h] for h in hits)
    reasons += [f"{label}: {' '.join(sorted(hits))}" for label, hits in by_field.items()]
    if semantic:
        reasons.append("semantic: close in meaning")
    return reasons


def results_to_json(results: Sequence[SearchResult]) -> str:
    """Compact JSON for programs and LLM callers: short keys, no empty fields, descriptions cut short
    (10 results stay well under 1,500 tokens)."""
    items = []
    for result in results:
        item: dict[str, Any] = {"metric": result.metric_name, "type": result.type}
        if result.unit:
            item["unit"] = result.unit
        item["score"] = round(result.score, 3)
        item["description"] = _shorten(result.description, JSON_DESCRIPTION_CHARS)
        if result.matched:
            item["matched"] = result.matched
        items.append(item)
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0] + "…"
