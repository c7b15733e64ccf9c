"""Search quality, leave-one-service-out, with plain references side by side in the same run.

    python bench/search_quality.py                       # the corpus in bench/corpora, plus the demo dev sets
    python bench/search_quality.py --quick               # CI: two services, a small grid; correctness only
    python bench/search_quality.py --enricher claude --enrichments claude-enrichments.json

Every service (a namespace with its own snapshot and questions) is indexed the way the assets do it: its label
schemas from its series snapshot (`<service>.series.json.gz`, as the raw asset reads them), enrichment (rules by
default), documents embedded with their label values into an embedded Chroma in a temporary directory, then read
back by `metrics_index.search.load_corpus`. Each question is ranked by:
- bm25: BM25 (bm25s, its own tokenizer and English stop words) over the name's words and the help text;
- dense: MiniLM (the default embedder) over the name's words and the help text;
- fuzzy: rapidfuzz WRatio of the question against each name (what metric explorers do);
- ours: metrics_index.search (the same functions `answer` calls: the fused ranking, then the labels a question asks
  to break down by), with RankingParams chosen leave-one-service-out:
  for each service, every setting in the grid is scored on the OTHER services' questions, the one that ranks best
  on the typical other service (its mean rank by each service's MRR; then mean MRR, then recall@5) is used on the
  service left out. Ablations restrict the grid, so each row says what a part of the ranker is worth: fixed
  defaults of the previous release, fusion weights only, plus question cues, without the metric-kind penalty;
  "ours" is the whole grid: fusion weights, question cues, the penalty on the monitoring's and an exporter's own
  runtime metrics, and the kind penalty (configuration, build information, self-monitoring that the question does
  not ask for).
Word tables (metrics_index.text) are not tuned by the grid. "vm" was corrected (a virtual machine, not virtual
memory); DNS's response code ("rcode", "servfail") and the synonym table (SYNONYM_GROUPS: a question word no metric
of the namespace uses is also searched as its synonyms the namespace uses) were written after reading the corpus's
misses, so each synonym group is checked out of fold like the cue families ("Synonym groups kept out of fold"),
and so are the label values in the vectors (text.embedding_text) and the abbreviations added after the corpus
(LATE_ABBREVIATIONS): without them, the corpora are enriched, embedded and indexed again (CorpusVariants); last all
at once: each service ranked with only the groups, the cue families, the label values and the abbreviations its fold
kept. The learned words (metrics_index/learned_words.py: name words questions ask for in other words) are learned
per fold: each service is ranked with a table learned from the other services' questions only, and "ours without the
learned words" says what they are worth. So is the query map (metrics_index/query_adapter.py: question vectors moved
towards the way metric documents say things), and "ours without the query map" says what it is worth.
`--write-learned` writes the table and the map the product ships, learned from every corpus question (a map per
embedding model: with `--model DIR` it adds that model's map beside MiniLM's).

The corpus is bench/corpora/<service>.json (a /api/v1/targets/metadata response per service) with questions
in bench/corpora/questions.jsonl (namespace "corpus:<service>"). Until it exists, the six demo jobs of the
bundled snapshot are the services. The demo dev set (../shared/eval/dev_queries.jsonl) and the old held-out set
(bench/queries/heldout.jsonl) are extra rows: both were written after reading the demo snapshot, so they are
development sets, not independent checks.

`--enricher claude --enrichments FILE` ranks Claude's labels instead of the rules': FILE holds, per
namespace, the records the Claude enricher stores (metric_name, description, category, subcategory,
golden_signal_type, golden_signal_description, meter_type); metrics missing from it fall back to rules and
are counted. When FILE does not exist and ANTHROPIC_API_KEY is set, the Claude enricher labels the corpus
first and FILE is written, so one command with a key makes the comparison.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import bm25s
import chromadb
import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process

from metrics_index import text as text_module
from metrics_index.embeddings import DEFAULT_MODEL, PACKAGED_MODEL, Embedder, get_embedder
from metrics_index.enrichment.base import Enricher, EnrichmentOutcome, ProgressCallback
from metrics_index.enrichment.incremental import enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.enrichment.vocabulary import EnrichedFields
from metrics_index.label_preference import BELOW_PINNED, wanted_labels, with_label_columns
from metrics_index.label_preference import DEPTH as LABEL_DEPTH
from metrics_index.label_preference import WEIGHT as LABEL_WEIGHT
from metrics_index.learned_words import LEARNED_WORDS_FILE, Example, Table, learn, shipped_table
from metrics_index.namespaces import Namespace, NamespaceSource, load_registry
from metrics_index.query_adapter import QUERY_ADAPTER_FILE, AskedNamespace, shipped_adapter, write_adapter
from metrics_index.query_adapter import learn as learn_adapter
from metrics_index.search import (
    DEFAULT_PARAMS,
    PENALISED_KINDS,
    RANKERS,
    RUNTIME_ASKED,
    NamespaceCorpus,
    RankingParams,
    Signals,
    answer,
    answered_documents,
    label_names,
    load_corpus,
    query_text,
    retrieval_text,
    says_failure,
    signals,
    term_documents,
)
from metrics_index.sources import RawMetric
from metrics_index.sources.labels import family_schemas, read_series_snapshot, with_labels
from metrics_index.sources.prometheus import fetch_raw_metadata
from metrics_index.stores.semantic_index import SemanticIndex
from metrics_index.text import ABBREVIATIONS, SYNONYM_GROUPS, search_terms, split_name, synonym_words
from metrics_index.units import unit_of

Learned = TypeVar("Learned")  # what is learned from the corpus questions: a learned-words table, a query map
ROOT = Path(__file__).resolve().parents[1]
CORPUS_DIR = ROOT / "bench" / "corpora"
# shared/ sits beside the project (CI, /work/main) or beside the folder of worktrees.
SHARED = next((p / "shared" for p in ROOT.parents[:2] if (p / "shared").is_dir()), ROOT.parent / "shared")
DEV_SETS = (SHARED / "eval" / "dev_queries.jsonl", ROOT / "bench" / "queries" / "heldout.jsonl")
DEPTH = 10  # MRR and recall count the first relevant metric within the top 10
REFERENCES = ("bm25 (name+help)", "dense (name+help)", "fuzzy name")
# The ranker before leave-one-service-out tuning: fixed weighted RRF, no cues, no kind or runtime weighting.
PREVIOUS_PARAMS = RankingParams(
    weights=(("name", 0.5), ("text", 0.5), ("dense", 1.5)),
    fusion="rrf",
    rrf_k=20,
    cue_boost=0.0,
    failure_boost=0.0,
    kind_penalty=0.0,
    runtime_penalty=0.0,
    learned_weight=0.0,
)


@dataclass(frozen=True)
class Query:
    namespace: str
    query: str
    relevant: frozenset[str]


def read_queries(path: str | Path) -> list[Query]:
    queries = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                item = json.loads(line)
                queries.append(Query(item["namespace"], item["query"], frozenset(item["relevant"])))
            except (ValueError, KeyError, TypeError) as error:
                raise SystemExit(f"{path}:{number}: not a question line ({error})") from None
    return queries


def reciprocal_rank(ranked: Sequence[str], relevant: frozenset[str]) -> float:
    first = next((i for i, name in enumerate(ranked[:DEPTH], 1) if name in relevant), None)
    return 1.0 / first if first else 0.0


def figures(reciprocal_ranks: Sequence[float]) -> dict[str, float]:
    """recall@1/5/10 and MRR from reciprocal ranks (0 for a miss within the top 10)."""
    values = np.asarray(reciprocal_ranks, dtype=float)
    if not len(values):
        return {"recall@1": 0.0, "recall@5": 0.0, "recall@10": 0.0, "mrr": 0.0}
    return {
        "recall@1": float((values >= 1.0).mean()),
        "recall@5": float((values >= 0.2).mean()),
        "recall@10": float((values > 0).mean()),
        "mrr": float(values.mean()),
    }


# -- the services: snapshots, enrichment, index ------------------------------------------------------------


def corpus_sources(corpus_dir: Path) -> dict[str, NamespaceSource]:
    """One namespace `corpus:<service>` per snapshot file in the corpus folder, with its series when saved."""
    sources = {}
    for path in sorted(corpus_dir.glob("*.json")):
        namespace = Namespace.parse(f"corpus:{path.stem}")
        series = path.with_name(f"{path.stem}.series.json.gz")
        sources[str(namespace)] = NamespaceSource(
            namespace, selector="{}", snapshot=path, series_snapshot=series if series.exists() else None
        )
    return sources


def labelled_metadata(source: NamespaceSource, raw: pd.DataFrame) -> pd.DataFrame:
    """The namespace's raw metadata (`raw`, as fetch_raw_metadata reads it) with its label schemas, from its series
    snapshot when it has one (the raw asset reads the same)."""
    if source.series_snapshot is None:
        return raw
    return with_labels(raw, family_schemas(raw, read_series_snapshot(source.series_snapshot, source.selector)))


def as_queried(queries: Sequence[Query], renamed: Mapping[str, Mapping[str, str]]) -> list[Query]:
    """The questions with each relevant metric named as the raw asset names it (`renamed`: metadata name -> that
    name, per namespace): questions name a counter by its metadata family (`celery_task_sent`), which the product
    calls `celery_task_sent_total` when the series say so (with_labels: the exporter spoke OpenMetrics)."""
    return [
        Query(q.namespace, q.query, frozenset(renamed[q.namespace].get(name, name) for name in q.relevant))
        for q in queries
    ]


class FileEnricher(Enricher):
    """Enrichments read from a file (e.g. stored by the Claude enricher); a metric it lacks is a failure,
    so enrich_catalog gives it to the fallback and counts it."""

    name = "file"

    def __init__(self, records: Mapping[str, Mapping[str, object]], label: str) -> None:
        self.records = records
        self.label = label

    @property
    def fingerprint(self) -> str:
        return f"file:{self.label}"

    def enrich(self, metrics: Sequence[RawMetric], progress: ProgressCallback | None = None) -> EnrichmentOutcome:
        outcome = EnrichmentOutcome()
        for metric in metrics:
            record = self.records.get(metric.metric_name)
            if record is None:
                outcome.failures[metric.metric_name] = "not in the enrichments file"
                continue
            fields = {key: record.get(key) for key in EnrichedFields.model_fields}
            fields["unit"] = unit_of(metric.metric_name, metric.unit, metric.help, answered=record.get("unit") or "")
            try:
                outcome.enriched[metric.metric_name] = EnrichedFields.model_validate(fields)
            except ValueError as error:
                outcome.failures[metric.metric_name] = f"invalid record: {error}"
        return outcome


def read_enrichments(path: Path) -> dict[str, dict[str, dict]]:
    """{namespace: {metric_name: record}} from a file {namespace: [record, ...]}."""
    body = json.loads(path.read_text())
    if not isinstance(body, dict) or not all(isinstance(v, list) for v in body.values()):
        raise SystemExit(f"{path}: expected an object mapping each namespace to a list of enrichment records")
    return {ns: {str(r["metric_name"]): r for r in records} for ns, records in body.items()}


def write_claude_enrichments(path: Path, raw_frames: Mapping[str, pd.DataFrame]) -> None:
    """Label every service with the Claude enricher (ANTHROPIC_API_KEY) and store its records in `path`."""
    from metrics_index.enrichment.claude import ClaudeEnricher  # only with a key

    enricher = ClaudeEnricher()
    stored = {}
    for namespace, raw in raw_frames.items():
        frame, report = enrich_catalog(RawMetric.from_frame(raw), enricher, RulesEnricher())
        print(f"{namespace}: {report.enriched} enriched by Claude, {report.failed} fell back to rules", flush=True)
        stored[namespace] = frame[frame["enricher"] == "claude"][list(EnrichedFields.model_fields)].to_dict("records")
    path.write_text(json.dumps(stored, indent=1))


def enrich(raw: pd.DataFrame, enrichments: Mapping[str, dict] | None, label: str) -> tuple[pd.DataFrame, int]:
    """The enriched frame with its label columns, as the enriched asset makes it (rules, or the file's records with
    rules for what they lack), and the fallback count."""
    primary: Enricher = RulesEnricher() if enrichments is None else FileEnricher(enrichments, label)
    frame, report = enrich_catalog(RawMetric.from_frame(raw), primary, RulesEnricher())
    return with_label_columns(frame, raw), report.failed if enrichments is not None else 0


# -- rankers -------------------------------------------------------------------------------------------------


class References:
    """The plain rankers, each over one namespace's raw metadata (name words + help text)."""

    def __init__(self, raw_frames: Mapping[str, pd.DataFrame], embedder: Embedder) -> None:
        self.embedder = embedder
        self.names = {ns: list(frame["metric_name"]) for ns, frame in raw_frames.items()}
        self.bm25 = {}
        self.vectors = {}
        for ns, frame in raw_frames.items():
            texts = [
                f"{' '.join(split_name(n))}. {h}" for n, h in zip(frame["metric_name"], frame["help"], strict=True)
            ]
            retriever = bm25s.BM25()
            retriever.index(_bm25_tokens(texts), show_progress=False)
            self.bm25[ns] = retriever
            self.vectors[ns] = embedder.embed(texts)

    def rankers(self) -> dict[str, Callable[[str, str, np.ndarray], list[str]]]:
        return dict(zip(REFERENCES, (self.bm25_ranker, self.dense_ranker, self.fuzzy_ranker), strict=True))

    def bm25_ranker(self, namespace: str, question: str, _vector: np.ndarray) -> list[str]:
        return _top_names(self.names[namespace], self.bm25[namespace].get_scores(_bm25_tokens([question])[0]))

    def dense_ranker(self, namespace: str, _question: str, vector: np.ndarray) -> list[str]:
        return _top_names(self.names[namespace], self.vectors[namespace] @ vector)

    def fuzzy_ranker(self, namespace: str, question: str, _vector: np.ndarray) -> list[str]:
        found = process.extract(
            question, self.names[namespace], scorer=fuzz.WRatio, processor=_fuzzy_processor, limit=DEPTH
        )
        return [name for name, _score, _index in found]


def _bm25_tokens(texts: list[str]) -> list[list[str]]:
    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


def _fuzzy_processor(text: str) -> str:
    return text.replace("_", " ").lower()


def _top_names(names: list[str], scores: np.ndarray) -> list[str]:
    order = sorted(range(len(names)), key=lambda i: (-float(scores[i]), i))[:DEPTH]
    return [names[i] for i in order]


# -- the grid of settings and leave-one-service-out -------------------------------------------------------


def weight_grid(quick: bool) -> list[tuple[tuple[str, float], ...]]:
    """Ranker weights, each ratio once (1:1:2 and 0.5:0.5:1 are the same fusion)."""
    levels = {"name": (0, 0.5, 1), "text": (0, 0.5, 1), "dense": (0, 0.5, 1, 1.5, 2, 3, 4, 6)}
    if quick:
        levels = {"name": (0, 0.5), "text": (0.5,), "dense": (1.5,)}
    seen, grid = set(), []
    for name, text, dense in itertools.product(*levels.values()):
        total = name + text + dense
        if not total:
            continue
        ratio = tuple(round(w / total, 4) for w in (name, text, dense))
        if ratio not in seen:
            seen.add(ratio)
            grid.append((("name", float(name)), ("text", float(text)), ("dense", float(dense))))
    return grid


GRID: dict[str, Sequence] = {
    "fusion": ("rrf", "score"),
    "rrf_k": (10, 20, 60),
    "cue_boost": (0, 0.2, 0.4, 0.7, 1.0),
    "failure_boost": (0, 0.35, 0.7),
    "kind_penalty": (0, 0.2, 0.4),
    "runtime_penalty": (0, 0.2, 0.4, 0.6),
    # Set in the dev loop (0.05-0.2 all help a little; bench/RESULTS.md, nineteenth round), not searched: a second
    # value would double the grid. Each service is ranked with words learned without it (LearnedPerFold).
    "learned_weight": (DEFAULT_PARAMS.learned_weight,),
}
QUICK_GRID: dict[str, Sequence] = {
    "fusion": ("rrf",),
    "cue_boost": (0, 0.2),
    "failure_boost": (0, 0.35),
    "kind_penalty": (0, 0.2),
    "runtime_penalty": (0, 0.4),
    "learned_weight": (DEFAULT_PARAMS.learned_weight,),
}
# Ablations: which settings of the grid each row may choose from. "ours" is the family the product ships: the whole
# grid (since build information and configuration values are told apart by the type and the name's last word, the
# kind penalty helps the services left out); "without the kind penalty" says what kind_penalty is worth.
VARIANTS: dict[str, Callable[[RankingParams], bool]] = {
    "ours: fusion weights": lambda p: not (p.cue_boost or p.failure_boost or p.kind_penalty or p.runtime_penalty),
    "ours: + question cues": lambda p: p.kind_penalty == 0 and p.runtime_penalty == 0,
    "ours: without the kind penalty": lambda p: p.kind_penalty == 0,
    "ours": lambda p: True,
}


def param_grid(fields: Mapping[str, Sequence], weights: Sequence[tuple[tuple[str, float], ...]]) -> list[RankingParams]:
    """Every combination, simplest first (so a tie keeps the simpler setting); rrf_k only varies for RRF, and the
    failure cue is boosted exactly when the other cues are."""
    grid: dict[RankingParams, None] = {}
    names = list(fields)
    for values in itertools.product(*(fields[n] for n in names)):
        chosen = dict(zip(names, values, strict=True))
        if bool(chosen.get("cue_boost")) != bool(chosen.get("failure_boost")):
            continue
        for w in weights:
            params = replace(PREVIOUS_PARAMS, weights=w, **chosen)
            if params.fusion == "score":
                params = replace(params, rrf_k=PREVIOUS_PARAMS.rrf_k)
            grid.setdefault(params, None)
    return [PREVIOUS_PARAMS, *(p for p in grid if p != PREVIOUS_PARAMS)]


@dataclass
class Prepared:
    """One question, ready to be ranked under any RankingParams."""

    query: Query
    vector: np.ndarray
    signals: Signals
    learned_table: Table  # the learned words it was ranked with (learned without its service)
    adapter: np.ndarray  # the query map it was ranked with (learned without its service)


def question_vectors(
    queries: Sequence[Query], corpora: Mapping[str, NamespaceCorpus], embedder: Embedder
) -> np.ndarray:
    """Each question embedded as search() embeds it (query_text; the references embed it as written)."""
    return embedder.embed([query_text(corpora[q.namespace], q.query) for q in queries])


def prepare(
    queries: Sequence[Query],
    vectors: np.ndarray,
    corpora: Mapping[str, NamespaceCorpus],
    tables: LearnedPerFold[Table],
    adapters: LearnedPerFold[np.ndarray],
) -> list[Prepared]:
    """Each question's signals from its embedding (`vectors`), as search() makes them, with its service's learned
    words (`tables`) and query map (`adapters`)."""
    return [
        Prepared(
            q,
            v,
            signals(
                corpora[q.namespace],
                q.query,
                v,
                learned_table=tables[q.namespace],
                adapter=adapters[q.namespace],
            ),
            tables[q.namespace],
            adapters[q.namespace],
        )
        for q, v in zip(queries, vectors, strict=True)
    ]


class LearnedPerFold(dict[str, Learned]):
    """What `learner` makes of the corpus's questions (the learned words, the query map): per LOSO service, of the
    other services' questions only; for any other namespace (the dev sets), of all of them, as shipped."""

    def __init__(self, by_service: Mapping[str, Sequence[Any]], learner: Callable[[list[Any]], Learned]) -> None:
        super().__init__({s: learner(every_item(by_service, but=s)) for s in by_service})
        self.everything = learner(every_item(by_service))

    def __missing__(self, namespace: str) -> Learned:
        return self.everything


def every_item(by_service: Mapping[str, Sequence[Any]], but: str | None = None) -> list[Any]:
    """The items of every service (but one)."""
    return [item for service, items in by_service.items() if service != but for item in items]


def learned_words(examples: list[Example]) -> Table:
    """The learned words as the product ships them: failure words are left to the failure cue."""
    return learn(examples, says_failure)


def learning_examples(questions: Sequence[Query], corpora: Mapping[str, NamespaceCorpus]) -> dict[str, list[Example]]:
    """Each service's questions as learned_words.learn reads them."""
    return {
        service: [learning_example(q, corpora[service]) for q in questions if q.namespace == service]
        for service in sorted({q.namespace for q in questions})
    }


def asked_namespaces(
    questions: Sequence[Query], vectors: np.ndarray, corpora: Mapping[str, NamespaceCorpus]
) -> dict[str, list[AskedNamespace]]:
    """Each service's questions (embedded: `vectors`) as the query map learns from them: one namespace a service,
    in the shape of learning_examples, so that LearnedPerFold and write_learned read both alike."""
    return {
        service: [
            AskedNamespace(
                vectors[rows],
                corpora[service].vectors,
                np.array([[name in questions[j].relevant for name in corpora[service].names] for j in rows]),
            )
        ]
        for service in sorted({q.namespace for q in questions})
        for rows in [[j for j, q in enumerate(questions) if q.namespace == service]]
    }


def learning_example(query: Query, corpus: NamespaceCorpus) -> Example:
    """A question as learned_words.learn reads it: its search terms (with the namespace's synonyms, as searched)
    and those of its relevant metrics' names."""
    answers = (name for name in query.relevant if name in corpus.position)
    return Example(
        query.namespace,
        frozenset(search_terms(query_text(corpus, query.query))),
        frozenset(term for name in answers for term in search_terms(name)),
    )


def our_reciprocal_ranks(
    corpora: Mapping[str, NamespaceCorpus], prepared: Sequence[Prepared], grid: Sequence[RankingParams]
) -> np.ndarray:
    """rr[setting, question] for every setting of the grid: all settings of a question at once (GridFusion), the
    same arithmetic as `fuse` and the label preference operation for operation, checked against
    `answered_documents` on a sample (and on every question the label preference can move)."""
    fusion = GridFusion(grid)
    rr = np.zeros((len(grid), len(prepared)))
    asking = []
    for j, item in enumerate(prepared):
        corpus, wanted = corpora[item.query.namespace], wanted_labels(item.query.query)
        relevant = [item.query.relevant.__contains__(corpus.names[d]) for d in item.signals.candidates]
        labelled = [bool(wanted.intersection(label_names(corpus, d))) for d in item.signals.candidates]
        asking += [j] if any(labelled) else []
        rr[:, j] = fusion.reciprocal_ranks(item.signals, np.array(relevant, dtype=bool), np.array(labelled, dtype=bool))
    rng = np.random.default_rng(0)
    sample = [*zip(rng.integers(len(grid), size=200), rng.integers(len(prepared), size=200), strict=True)]
    for i, j in sample + [(int(i), j) for j in asking for i in rng.integers(len(grid), size=5)]:
        item, corpus = prepared[j], corpora[prepared[j].query.namespace]
        answered = answered_documents(corpus, item.query.query, item.signals, grid[i], DEPTH)
        assert rr[i, j] == reciprocal_rank([corpus.names[d] for d in answered], item.query.relevant), (grid[i], item)
    return rr


class GridFusion:
    """`metrics_index.search.fuse` for every setting of a grid at once (rows: settings, columns: candidates)."""

    def __init__(self, grid: Sequence[RankingParams]) -> None:
        column = lambda values: np.array(values, dtype=float)[:, None]  # noqa: E731
        self.rrf = np.array([p.fusion == "rrf" for p in grid])
        self.rrf_k = column([p.rrf_k for p in grid])
        self.weights = {r: column([p.weight(r) for p in grid]) for r in RANKERS}
        self.total = column([sum(p.weight(r) for r in RANKERS) or 1.0 for p in grid])
        self.cue_boost = column([p.cue_boost for p in grid])
        self.failure_boost = column([p.failure_boost for p in grid])
        self.runtime_penalty = column([p.runtime_penalty for p in grid])
        self.kind_penalty = column([p.kind_penalty for p in grid])
        self.learned_weight = column([p.learned_weight for p in grid])

    def scores(self, found: Signals) -> np.ndarray:
        rrf = self.rrf[:, None]
        fused = np.zeros((len(self.rrf), len(found.candidates)))
        for ranker in RANKERS:
            weight = self.weights[ranker]
            by_rank = weight * (self.rrf_k + 1) / (self.rrf_k + 1 + found.ranks[ranker][None, :])
            fused += np.where(weight != 0, np.where(rrf, by_rank, weight * found.scaled[ranker][None, :]), 0.0)
        fused /= self.total
        for cue in found.cues:
            if cue in found.traits:
                boost = self.failure_boost if cue == "failure" else self.cue_boost  # search.cue_boost, per setting
                fused = np.where(found.traits[cue][None, :] & (boost != 0), fused * (1.0 + boost), fused)
        if not found.cues & RUNTIME_ASKED and "exporter_runtime" in found.traits:
            mask = found.traits["exporter_runtime"][None, :] & (self.runtime_penalty != 0)
            fused = np.where(mask, fused * (1.0 - self.runtime_penalty), fused)
        for kind in PENALISED_KINDS - found.cues:
            if kind in found.traits:
                mask = found.traits[kind][None, :] & (self.kind_penalty != 0)
                fused = np.where(mask, fused * (1.0 - self.kind_penalty), fused)
        return fused + self.learned_weight * found.learned[None, :] + found.pin_boost[None, :]

    def reciprocal_ranks(self, found: Signals, relevant: np.ndarray, labelled: np.ndarray) -> np.ndarray:
        """Per setting, 1 / the rank of the first relevant candidate within DEPTH (0 when none): a candidate ranks
        after every higher score and every equal score of a lower document number, as `ranked_documents` orders;
        then, when some candidate carries a label the question asks for (`labelled`), as the label preference
        re-orders the first LABEL_DEPTH (label_preference.prefer_labelled on the scores results show)."""
        scores = self.scores(found)
        if labelled.any():
            return self._preferred_reciprocal_ranks(scores, relevant, labelled)
        best = np.full(len(scores), np.inf)
        for c in np.flatnonzero(relevant):
            own = scores[:, c : c + 1]
            ahead = (scores > own) | ((scores == own) & (found.candidates < found.candidates[c])[None, :])
            rank = ahead.sum(axis=1) + 1.0
            best = np.minimum(best, rank)
        return np.where(best <= DEPTH, 1.0 / best, 0.0)

    @staticmethod
    def _preferred_reciprocal_ranks(scores: np.ndarray, relevant: np.ndarray, labelled: np.ndarray) -> np.ndarray:
        # Candidates are in document order, so a stable sort breaks equal scores by document as ranked_documents does.
        order = np.argsort(-scores, axis=1, kind="stable")
        position = np.empty_like(order)
        np.put_along_axis(position, order, np.arange(scores.shape[1])[None, :], axis=1)
        listed = position < LABEL_DEPTH
        shown = np.round(np.minimum(scores, 1.0), 4)
        lifted = listed & labelled[None, :] & (shown < 1.0)
        shown = np.where(lifted, np.minimum(shown + LABEL_WEIGHT, BELOW_PINNED), shown)
        best = np.full(len(scores), np.inf)
        for c in np.flatnonzero(relevant):
            own, at = shown[:, c : c + 1], position[:, c : c + 1]
            ahead = listed & ((shown > own) | ((shown == own) & (position < at)))
            best = np.minimum(best, np.where(listed[:, c], ahead.sum(axis=1) + 1.0, np.inf))
        return np.where(best <= DEPTH, 1.0 / best, 0.0)


def choose(rr: np.ndarray, allowed: np.ndarray, by_question: Sequence[str], training: Iterable[str]) -> int:
    """Among the allowed grid rows, the one that ranks best on the typical training service (best_setting)."""
    return best_setting(*service_figures(rr, by_question, training), allowed)


def service_figures(
    rr: np.ndarray, by_question: Sequence[str], services: Iterable[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Every grid row's MRR and recall@5 on each of the services that have questions (rows x services)."""
    columns = [c for c in ([j for j, ns in enumerate(by_question) if ns == s] for s in services) if c]
    mrr = np.stack([rr[:, c].mean(axis=1) for c in columns], axis=1)
    recall5 = np.stack([(rr[:, c] >= 0.2).mean(axis=1) for c in columns], axis=1)
    return mrr, recall5


def best_setting(mrr: np.ndarray, recall5: np.ndarray, allowed: np.ndarray) -> int:
    """Among the allowed rows, the one that ranks best on the typical service (a column): the mean over the services
    of the row's rank by that service's MRR (tied rows share their mean rank), then the best mean MRR, then recall@5,
    then the first (simplest). Ranks, not the mean MRR itself: a few small services whose MRR swings most between
    near-tied settings no longer choose for all (bench/RESULTS.md, twenty-second round)."""
    rows = np.flatnonzero(allowed)
    mrr, recall5 = mrr[rows], recall5[rows]
    order = np.lexsort((rows, -recall5.mean(axis=1), -mrr.mean(axis=1), mean_rank(mrr)))
    return int(rows[order[0]])


def mean_rank(values: np.ndarray) -> np.ndarray:
    """Each row's rank in each column (1 the highest value; tied rows share their mean rank), averaged over the
    columns."""
    ranks = np.empty(values.shape)
    for j, column in enumerate(values.T):
        ascending = np.sort(-column)
        ranks[:, j] = (
            np.searchsorted(ascending, -column, "left") + np.searchsorted(ascending, -column, "right") + 1
        ) / 2
    return ranks.mean(axis=1)


def leave_one_service_out(
    rr: np.ndarray, allowed: np.ndarray, services: Sequence[str], by_question: Sequence[str]
) -> tuple[np.ndarray, dict[str, int]]:
    """Each question's reciprocal rank under the setting chosen without its service, and those choices. The
    services' figures are computed once; each fold chooses on the other services' columns."""
    asked = [s for s in services if s in set(by_question)]
    mrr, recall5 = service_figures(rr, by_question, asked)
    others = {s: [i for i, t in enumerate(asked) if t != s] for s in services}
    chosen = {s: best_setting(mrr[:, others[s]], recall5[:, others[s]], allowed) for s in services}
    held_out = np.array([rr[chosen[ns], j] for j, ns in enumerate(by_question)])
    return held_out, chosen


# -- report ---------------------------------------------------------------------------------------------------


def per_service(values: Mapping[str, Sequence[float]], by_question: Sequence[str]) -> dict[str, dict]:
    """figures[ranker][service], plus the macro mean over services as 'mean'."""
    report = {}
    services = sorted(set(by_question))
    for ranker, rr in values.items():
        table = {s: figures([r for r, ns in zip(rr, by_question, strict=True) if ns == s]) for s in services}
        table["mean"] = {key: float(np.mean([table[s][key] for s in services])) for key in table[services[0]]}
        report[ranker] = table
    return report


def markdown(title: str, report: Mapping[str, Mapping[str, Mapping[str, float]]], counts: Mapping[str, int]) -> str:
    rankers = list(report)
    lines = [f"#### {title}", "", "recall@5 / MRR per service (questions); mean = mean over services", ""]
    lines.append("| service | " + " | ".join(rankers) + " | ours ≥ best reference (MRR) |")
    lines.append("|---|" + "---:|" * len(rankers) + ":---:|")
    for service in [*sorted(counts), "mean"]:
        cells = [f"{report[r][service]['recall@5']:.3f} / {report[r][service]['mrr']:.3f}" for r in rankers]
        best = max(report[r][service]["mrr"] for r in REFERENCES if r in report)
        ok = "yes" if report["ours"][service]["mrr"] >= best - 1e-9 else "**no**"
        label = f"{service} ({counts[service]})" if service in counts else "**mean**"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ok} |")
    return "\n".join(lines)


def describe(params: RankingParams) -> str:
    weights = "/".join(f"{w:g}" for _r, w in params.weights)
    fusion = f"rrf k={params.rrf_k}" if params.fusion == "rrf" else "score"
    return (
        f"{fusion} w(name/text/dense)={weights} cue={params.cue_boost:g} failure={params.failure_boost:g}"
        f" kind={params.kind_penalty:g}"
        f" runtime={params.runtime_penalty:g} learned={params.learned_weight:g}"
    )


# -- main -----------------------------------------------------------------------------------------------------


def load_services(args: argparse.Namespace) -> tuple[dict[str, NamespaceSource], list[Query], dict[str, list[Query]]]:
    """The LOSO services with their questions, and the extra (dev) question sets."""
    dev_sets = {Path(p).name: read_queries(p) for p in args.extra if Path(p).exists()}
    questions_file = args.corpus / "questions.jsonl"
    registry = load_registry()
    if questions_file.exists():
        sources = corpus_sources(args.corpus)
        questions = read_queries(questions_file)
    else:  # until the broad corpus lands: the demo jobs are the services, their dev sets the questions
        questions = [q for queries in dev_sets.values() for q in queries]
        sources = {}
    unknown = {q.namespace for q in questions} - sources.keys() - registry.sources.keys()
    if unknown:
        raise SystemExit(f"questions name namespaces with no snapshot: {sorted(unknown)}")
    for q in [*questions, *(q for queries in dev_sets.values() for q in queries)]:
        sources.setdefault(q.namespace, registry.sources.get(q.namespace))
    if args.quick:
        keep = sorted({q.namespace for q in questions})[: args.quick_services]
        questions = [q for ns in keep for q in [q for q in questions if q.namespace == ns][: args.quick_questions]]
        kept = {name: [q for q in qs if q.namespace in keep][:4] for name, qs in dev_sets.items()}
        dev_sets = {name: qs for name, qs in kept.items() if qs}  # a dev set about other services is left out
    used = {q.namespace for q in questions} | {q.namespace for qs in dev_sets.values() for q in qs}
    return {ns: s for ns, s in sources.items() if ns in used and s is not None}, questions, dev_sets


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR, help="snapshots and questions.jsonl")
    parser.add_argument("--extra", nargs="*", default=[str(p) for p in DEV_SETS], help="dev question sets")
    parser.add_argument("--enricher", choices=("rules", "claude"), default="rules")
    parser.add_argument("--enrichments", type=Path, help="with --enricher claude: the stored enrichments (JSON)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="embedding model (default: MiniLM in int8 arithmetic)")
    parser.add_argument("--quick", action="store_true", help="a few services and questions, a small grid (CI)")
    parser.add_argument("--quick-services", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--quick-questions", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--json-out", type=Path, help="also write the figures and choices as JSON")
    parser.add_argument("--chroma", type=Path, help="keep the index in this folder; a re-run embeds only what changed")
    parser.add_argument("--show-misses", action="store_true", help="questions ours did not rank first, per service")
    parser.add_argument(
        "--write-learned",
        action="store_true",
        help=f"only write metrics_index/data/{LEARNED_WORDS_FILE.name} and {QUERY_ADAPTER_FILE.name}: learned from"
        " every corpus question, as shipped",
    )
    args = parser.parse_args(argv)
    if args.write_learned and args.quick:
        parser.error("--write-learned learns from the whole corpus: not with --quick")
    if args.enricher == "claude" and not args.enrichments:
        parser.error("--enricher claude needs --enrichments FILE (read, or written first when a key is set)")

    started = time.perf_counter()
    sources, questions, dev_sets = load_services(args)
    metadata = {ns: fetch_raw_metadata(source) for ns, source in sorted(sources.items())}
    raw_frames = {ns: labelled_metadata(sources[ns], raw) for ns, raw in metadata.items()}
    renamed = {
        ns: dict(zip(raw["metric_name"], raw_frames[ns]["metric_name"], strict=True)) for ns, raw in metadata.items()
    }
    questions = as_queried(questions, renamed)
    dev_sets = {name: as_queried(queries, renamed) for name, queries in dev_sets.items()}
    enrichments: dict[str, dict[str, dict]] | None = None
    if args.enricher == "claude":
        if not args.enrichments.exists():
            if not os.environ.get("ANTHROPIC_API_KEY"):
                raise SystemExit(f"{args.enrichments} does not exist and ANTHROPIC_API_KEY is not set to make it")
            write_claude_enrichments(args.enrichments, raw_frames)
        enrichments = read_enrichments(args.enrichments)

    embedder = get_embedder(args.model)
    corpora: dict[str, NamespaceCorpus] = {}
    labelled: set[str] = set()  # the namespaces with label values
    fallbacks = {}
    with tempfile.TemporaryDirectory(prefix="metrics-index-bench-") as temporary:
        chroma_dir = str(args.chroma or temporary)
        index = SemanticIndex(chromadb.PersistentClient(path=chroma_dir), embedder, "search-quality")
        for namespace, raw in raw_frames.items():
            records = None if enrichments is None else enrichments.get(namespace, {})
            frame, fallbacks[namespace] = enrich(raw, records, str(args.enrichments))
            index.sync(namespace, frame)
            corpora[namespace] = load_corpus(index, namespace)
            if frame["label_values"].astype(bool).any():
                labelled.add(namespace)
        del index
    indexed_s = time.perf_counter() - started
    print(
        f"{sum(len(f) for f in raw_frames.values())} metrics in {len(raw_frames)} namespaces, enricher "
        f"{args.enricher}, embeddings {embedder.model_id}: indexed in {indexed_s:.1f} s"
    )
    if enrichments is not None:
        print(f"metrics missing from {args.enrichments} (ranked with rules enrichment): {fallbacks}")

    all_queries = [*questions, *(q for qs in dev_sets.values() for q in qs)]
    vectors = question_vectors(all_queries, corpora, embedder)
    examples = learning_examples(questions, corpora)
    asked = asked_namespaces(questions, vectors[: len(questions)], corpora)
    if args.write_learned:
        write_learned(examples, asked, embedder)
        print(f"wrote {LEARNED_WORDS_FILE} and {QUERY_ADAPTER_FILE}")
        return 0
    tables = LearnedPerFold(examples, learned_words)
    adapters = LearnedPerFold(asked, learn_adapter)
    print(
        f"learned words: {sum(map(len, tables.everything.values()))} name words for {len(tables.everything)} question"
        f" words, from {len(questions)} questions; the shipped table (data/{LEARNED_WORDS_FILE.name}) is"
        f" {'the same' if dict(shipped_table()) == tables.everything else 'NOT the same: run --write-learned'}"
    )
    shipped = shipped_adapter(embedder.model_id)
    current = shipped is not None and np.allclose(shipped, adapters.everything, atol=1e-4)
    print(
        f"query map: learned from {len(questions)} questions of {len(asked)} services; the shipped map"
        f" (data/{QUERY_ADAPTER_FILE.name}) is {'the same' if current else 'NOT the same: run --write-learned'}"
    )
    prepared = prepare(all_queries, vectors, corpora, tables, adapters)
    plain_vectors = embedder.embed([q.query for q in all_queries])
    references = References(raw_frames, embedder).rankers()
    reference_rr = {
        name: [
            reciprocal_rank(ranker(q.namespace, q.query, v), q.relevant)
            for q, v in zip(all_queries, plain_vectors, strict=True)
        ]
        for name, ranker in references.items()
    }
    # The product's own entry point answers exactly as the bench ranks (with the shipped learned words): checked on
    # a sample of the questions.
    for p in prepared[:: max(1, len(prepared) // 20)]:
        corpus = corpora[p.query.namespace]
        direct = [r.metric_name for r in answer(corpus, p.query.query, p.vector, k=DEPTH)]
        shipped = signals(corpus, p.query.query, p.vector)
        via_signals = answered_documents(corpus, p.query.query, shipped, DEFAULT_PARAMS, DEPTH)
        assert direct == [corpus.names[d] for d in via_signals], p.query

    services = sorted({q.namespace for q in questions})
    loso_questions = len(questions)
    by_question = [p.query.namespace for p in prepared]
    grid = param_grid(QUICK_GRID if args.quick else GRID, weight_grid(args.quick))
    rr = our_reciprocal_ranks(corpora, prepared, grid)
    print(f"{len(grid)} settings x {len(prepared)} questions ranked", flush=True)
    ours_rr: dict[str, np.ndarray] = {"ours: before (fixed RRF)": rr[0]}  # grid[0] is PREVIOUS_PARAMS
    choices: dict[str, dict[str, RankingParams]] = {}
    for variant, admits in VARIANTS.items():
        allowed = np.array([admits(params) for params in grid])
        held_out, chosen = leave_one_service_out(
            rr[:, :loso_questions], allowed, services, by_question[:loso_questions]
        )
        # Dev-set questions of services outside the LOSO set use the setting chosen on all LOSO services.
        on_all = choose(rr[:, :loso_questions], allowed, by_question[:loso_questions], services)
        extra = [rr[chosen.get(ns, on_all), j] for j, ns in enumerate(by_question) if j >= loso_questions]
        ours_rr[variant] = np.concatenate([held_out, np.asarray(extra)])
        choices[variant] = {s: grid[i] for s, i in chosen.items()} | {"(all services)": grid[on_all]}

    values = {**{name: reference_rr[name] for name in REFERENCES}, **ours_rr}
    loso = per_service({r: v[:loso_questions] for r, v in values.items()}, by_question[:loso_questions])
    counts = {s: by_question[:loso_questions].count(s) for s in services}
    kind = "the broad corpus" if (args.corpus / "questions.jsonl").exists() else "the demo jobs (dev sets)"
    print("\n" + markdown(f"Leave-one-service-out over {kind}, {loso_questions} questions", loso, counts) + "\n")
    report = {"loso": loso, "dev_sets": {}, "fallbacks": fallbacks}
    start = loso_questions
    for name, queries in dev_sets.items():
        span = slice(start, start + len(queries))
        start += len(queries)
        dev = per_service({r: v[span] for r, v in values.items()}, by_question[span])
        report["dev_sets"][name] = dev
        dev_counts = {s: by_question[span].count(s) for s in sorted(set(by_question[span]))}
        print(markdown(f"{name} (a dev set: written after reading the snapshot)", dev, dev_counts) + "\n")

    print("Settings chosen without each service (ours):")
    for service, params in choices["ours"].items():
        print(f"  {service}: {describe(params)}")
    print(f"Shipped default (metrics_index.search.DEFAULT_PARAMS): {describe(DEFAULT_PARAMS)}")
    for part, without in (("learned words", without_learned_words), ("query map", without_query_map)):
        report[f"without {part}"] = held_out_with(
            prepared[:loso_questions], corpora, choices["ours"], services, without
        )
        figures_ = report[f"without {part}"]
        print(f"Ours without the {part}: recall@5 {figures_['recall@5']:.3f} / MRR {figures_['mrr']:.3f}")
    report["cue_families"] = cue_families_out_of_fold(prepared[:loso_questions], corpora, choices["ours"], services)
    print("\n" + out_of_fold_text("question-cue families", report["cue_families"], "ask for it", len(services)))
    report["synonym_groups"] = synonym_groups_out_of_fold(
        prepared[:loso_questions], corpora, choices["ours"], services, embedder
    )
    print("\n" + out_of_fold_text("synonym groups", report["synonym_groups"], "use it", len(services)))
    with tempfile.TemporaryDirectory(prefix="metrics-index-bench-variants-") as folder:
        loso_sources = {ns: raw_frames[ns] for ns in services}
        variants = CorpusVariants(
            folder, embedder, loso_sources, enrichments, str(args.enrichments), questions, (tables, adapters)
        )
        variants.cache[CorpusVariant()] = ({ns: corpora[ns] for ns in services}, prepared[:loso_questions])
        report["corpus_tables"] = corpus_tables_out_of_fold(variants, choices["ours"], services, labelled)
        print(
            "\n"
            + out_of_fold_text(
                "label values and late abbreviations",
                report["corpus_tables"],
                "are in services that use them",
                len(services),
            )
        )
        report["word_tables"] = word_tables_out_of_fold(variants, choices["ours"], services, embedder, report)
    both = report["word_tables"]
    print(
        "\nOurs with each fold's synonym groups, question-cue families, label values and late abbreviations at once: "
        f"recall@5 {both['recall@5']:.3f} / MRR {both['mrr']:.3f}"
    )
    if args.show_misses:
        print("\n" + "\n".join(misses(prepared, corpora, choices["ours"])))
    print(f"\n{time.perf_counter() - started:.1f} s in all")
    if args.json_out:
        report["choices"] = {v: {s: asdict(p) for s, p in c.items()} for v, c in choices.items()}
        args.json_out.write_text(json.dumps(report, indent=1))
    return 0


# The question cues, by family (metrics_index.search.question_cues): the cue rules are written, not searched for
# in a grid, so each family's worth is checked out of fold: kept for a service only when it helps the others.
CUE_FAMILIES: dict[str, frozenset[str]] = {
    "rate (counter)": frozenset({"counter"}),
    "current value": frozenset({"current"}),
    "duration": frozenset({"duration"}),
    "availability": frozenset({"availability"}),
    "start": frozenset({"start", "start_count"}),
    "configuration": frozenset({"configuration"}),
    "build information": frozenset({"info"}),
    "self-monitoring": frozenset({"self_monitoring"}),
    "direction": frozenset({"inbound", "outbound", "read", "write"}),
    "data amount": frozenset({"bytes"}),
    "failure": frozenset({"failure"}),
    "yes or no (flag)": frozenset({"flag"}),
    "percentile (distribution)": frozenset({"distribution"}),
    "share of a whole (proportion)": frozenset({"proportion"}),
}


def kept_out_of_fold(
    families: Sequence[str],
    reciprocal_ranks: Callable[[RankingParams, frozenset[str]], np.ndarray],
    chosen: Mapping[str, RankingParams],
    columns: Mapping[str, Sequence[int]],
    questions: Mapping[str, int],
) -> dict[str, Any]:
    """For each service left out, each family is kept when, at the fold's chosen setting, the other services' mean
    MRR is higher with it than without it (the rest kept); the service is then scored with the families its fold
    kept. `reciprocal_ranks(params, dropped families)` ranks every question; `questions` counts those a family
    applies to."""
    rr = functools.cache(reciprocal_ranks)  # most folds share a setting

    def others_mrr(service: str, dropped: frozenset[str]) -> float:
        values = rr(chosen[service], dropped)
        return float(np.mean([values[c].mean() for t, c in columns.items() if t != service]))

    kept_by = dict.fromkeys(families, 0)
    held_out = np.zeros(sum(len(c) for c in columns.values()))
    dropped_by: dict[str, list[str]] = {}
    for service, column in columns.items():
        with_all = others_mrr(service, frozenset())
        dropped = frozenset(f for f in families if not with_all > others_mrr(service, frozenset({f})))
        for family in set(families) - dropped:
            kept_by[family] += 1
        dropped_by[service] = sorted(dropped)
        held_out[column] = rr(chosen[service], dropped)[column]
    return {
        "kept_on_folds": kept_by,
        "questions": dict(questions),
        "dropped_on_fold": dropped_by,
        "held_out": held_out_figures(held_out, columns),
    }


def held_out_figures(held_out: np.ndarray, columns: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """The mean over services of each one's MRR and recall@5, from every question's held-out reciprocal rank."""
    return {
        "mrr": float(np.mean([held_out[c].mean() for c in columns.values()])),
        "recall@5": float(np.mean([(held_out[c] >= 0.2).mean() for c in columns.values()])),
    }


def service_columns(prepared: Sequence[Prepared], services: Sequence[str]) -> dict[str, list[int]]:
    by_question = [p.query.namespace for p in prepared]
    return {s: [j for j, ns in enumerate(by_question) if ns == s] for s in services}


def ranked_reciprocal_ranks(
    prepared: Sequence[Prepared],
    corpora: Mapping[str, NamespaceCorpus],
    params: RankingParams,
    found: Sequence[Signals],
) -> np.ndarray:
    """Each question's reciprocal rank under `params`, ranked from `found` (its signals, possibly altered)."""
    return np.array(
        [
            reciprocal_rank(
                [
                    corpora[p.query.namespace].names[d]
                    for d in answered_documents(corpora[p.query.namespace], p.query.query, f, params, DEPTH)
                ],
                p.query.relevant,
            )
            for p, f in zip(prepared, found, strict=True)
        ]
    )


def cue_families_out_of_fold(
    prepared: Sequence[Prepared],
    corpora: Mapping[str, NamespaceCorpus],
    chosen: Mapping[str, RankingParams],
    services: Sequence[str],
) -> dict[str, Any]:
    """The question cues, family by family (CUE_FAMILIES), kept or dropped per fold (kept_out_of_fold)."""

    def reciprocal_ranks(params: RankingParams, dropped: frozenset[str]) -> np.ndarray:
        found = [without_cue_families(p.signals, dropped) for p in prepared]
        return ranked_reciprocal_ranks(prepared, corpora, params, found)

    asking = {f: sum(bool(p.signals.cues & cues) for p in prepared) for f, cues in CUE_FAMILIES.items()}
    return kept_out_of_fold(list(CUE_FAMILIES), reciprocal_ranks, chosen, service_columns(prepared, services), asking)


def synonym_groups_out_of_fold(
    prepared: Sequence[Prepared],
    corpora: Mapping[str, NamespaceCorpus],
    chosen: Mapping[str, RankingParams],
    services: Sequence[str],
    embedder: Embedder,
) -> dict[str, Any]:
    """The synonym table (text.SYNONYM_GROUPS) checked like the cue families, group by group: a group only the
    left-out service's questions use is dropped on that fold. A question a dropped group applies to is embedded
    and ranked again without it."""
    groups = SYNONYM_GROUP_NAMES
    terms = [search_terms(retrieval_text(p.query.query)) for p in prepared]
    documents = [functools.partial(term_documents, corpora[p.query.namespace].text_index) for p in prepared]
    uses = {
        name: {j for j, (t, d) in enumerate(zip(terms, documents, strict=True)) if synonym_words(t, d, (group,))}
        for name, group in groups.items()
    }

    def reciprocal_ranks(params: RankingParams, dropped: frozenset[str]) -> np.ndarray:
        found = [signals_without(p, corpora, embedder, dropped) for p in prepared]
        return ranked_reciprocal_ranks(prepared, corpora, params, found)

    using = {name: len(questions) for name, questions in uses.items()}
    return kept_out_of_fold(list(groups), reciprocal_ranks, chosen, service_columns(prepared, services), using)


SYNONYM_GROUP_NAMES = {" / ".join(group): group for group in SYNONYM_GROUPS}


def signals_without(
    p: Prepared,
    corpora: Mapping[str, NamespaceCorpus],
    embedder: Embedder,
    dropped_groups: frozenset[str],
    dropped_families: Iterable[str] = (),
) -> Signals:
    """A question's signals without some synonym groups (by name; embedded and ranked again when one it uses is
    dropped) and without the cues of some question-cue families."""
    corpus, question = corpora[p.query.namespace], p.query.query
    kept = tuple(group for name, group in SYNONYM_GROUP_NAMES.items() if name not in dropped_groups)
    found, text = p.signals, query_text(corpus, question, kept)
    if text != found.text:
        found = signals(corpus, question, embedder.embed([text])[0], kept, p.learned_table, p.adapter)
    return without_cue_families(found, dropped_families)


def held_out_with(
    prepared: Sequence[Prepared],
    corpora: Mapping[str, NamespaceCorpus],
    chosen: Mapping[str, RankingParams],
    services: Sequence[str],
    altered: Callable[[Prepared, NamespaceCorpus], Signals],
) -> dict[str, float]:
    """Each service ranked at its fold's setting from `altered` signals (without a part: what the part is worth)."""
    columns = service_columns(prepared, services)
    held_out = np.zeros(len(prepared))
    for service, column in columns.items():
        part = [prepared[j] for j in column]
        found = [altered(p, corpora[service]) for p in part]
        held_out[column] = ranked_reciprocal_ranks(part, corpora, chosen[service], found)
    return held_out_figures(held_out, columns)


def without_learned_words(p: Prepared, _corpus: NamespaceCorpus) -> Signals:
    return replace(p.signals, learned=np.zeros_like(p.signals.learned))


def without_query_map(p: Prepared, corpus: NamespaceCorpus) -> Signals:
    return signals(corpus, p.query.query, p.vector, learned_table=p.learned_table, adapter=np.zeros((0, 0)))


def write_learned(
    examples: Mapping[str, Sequence[Example]], asked: Mapping[str, Sequence[AskedNamespace]], embedder: Embedder
) -> None:
    """The table and the map learned from every corpus question, as the product ships them (learned_words.
    shipped_table, query_adapter.shipped_adapter); the map for the model's vectors, in int8 or float arithmetic."""
    learned_from = f"{len(every_item(examples))} questions of {len(examples)} services"
    body = {"learned from": learned_from, "table": learned_words(every_item(examples))}
    LEARNED_WORDS_FILE.write_text(json.dumps(body, indent=1) + "\n")
    shipped_table.cache_clear()
    same_vectors = {DEFAULT_MODEL, PACKAGED_MODEL}
    models = sorted(same_vectors) if embedder.model_id in same_vectors else [embedder.model_id]
    write_adapter(learn_adapter(every_item(asked)), models, learned_from)


def without_cue_families(found: Signals, families: Iterable[str]) -> Signals:
    """A question's signals without the cues of some question-cue families (CUE_FAMILIES)."""
    cues = frozenset().union(*(CUE_FAMILIES[f] for f in families))
    return replace(found, cues=found.cues - cues) if cues else found


def word_tables_out_of_fold(
    variants: CorpusVariants,
    chosen: Mapping[str, RankingParams],
    services: Sequence[str],
    embedder: Embedder,
    reports: Mapping[str, Mapping[str, Any]],
) -> dict[str, float]:
    """Each service ranked with only the synonym groups, question-cue families, label values and late abbreviations
    its fold kept, all at once (`reports`: what synonym_groups_out_of_fold, cue_families_out_of_fold and
    corpus_tables_out_of_fold found)."""
    prepared = variants.get(CorpusVariant())[1]
    columns = service_columns(prepared, services)
    held_out = np.zeros(len(prepared))
    for service, column in columns.items():
        groups = frozenset(reports["synonym_groups"]["dropped_on_fold"][service])
        families = reports["cue_families"]["dropped_on_fold"][service]
        variant = CorpusVariant.without(reports["corpus_tables"]["dropped_on_fold"][service])
        corpora, questions = variants.get(variant)
        with abbreviations_without(variant.words()):
            found = [signals_without(questions[j], corpora, embedder, groups, families) for j in column]
        held_out[column] = ranked_reciprocal_ranks([prepared[j] for j in column], corpora, chosen[service], found)
    return held_out_figures(held_out, columns)


LABEL_VALUES = "label values in the vectors"
# The entries of text.ABBREVIATIONS written after reading the corpus's misses, by what they spell ("vm" was
# corrected then, from virtual memory to virtual machine: its earlier entry was wrong, not absent).
LATE_ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "DNS transports (doh, dot)": ("doh", "dot"),
    "process times (rss, usertime, systime)": ("rss", "usertime", "systime"),
    "DNS response codes (rcode, servfail)": ("rcode", "rcodes", "servfail"),
    "receive buffer (recvbuf)": ("recvbuf",),
}


@dataclass(frozen=True)
class CorpusVariant:
    """The corpora without some of what was written after reading the corpus's misses and changes the documents:
    some LATE_ABBREVIATIONS groups, or the label values in the vectors."""

    abbreviations: frozenset[str] = frozenset()
    label_values: bool = True

    @classmethod
    def without(cls, dropped: Iterable[str]) -> CorpusVariant:
        dropped = frozenset(dropped)
        return cls(frozenset(dropped & LATE_ABBREVIATIONS.keys()), LABEL_VALUES not in dropped)

    def words(self) -> list[str]:
        return [word for group in sorted(self.abbreviations) for word in LATE_ABBREVIATIONS[group]]


@contextmanager
def abbreviations_without(words: Iterable[str]) -> Iterator[None]:
    """text.ABBREVIATIONS without some entries for the length of the block (the caches that hold them emptied)."""
    saved = {word: ABBREVIATIONS.pop(word) for word in words}
    if not saved:
        yield
        return
    _abbreviations_changed()
    try:
        yield
    finally:
        ABBREVIATIONS.update(saved)
        _abbreviations_changed()


def _abbreviations_changed() -> None:
    """Empty text.py's caches of words split and spelled with the table (the only state derived from it)."""
    text_module._split_part.cache_clear()
    text_module._part_terms.cache_clear()


class CorpusVariants:
    """Each variant's corpora and LOSO questions (ready to rank), made the way the bench's own are: enriched,
    indexed into an embedded Chroma in `folder`, read back; built when first asked for."""

    def __init__(
        self,
        folder: str,
        embedder: Embedder,
        raw_frames: Mapping[str, pd.DataFrame],
        enrichments: Mapping[str, dict[str, dict]] | None,
        label: str,
        questions: Sequence[Query],
        learned: tuple[LearnedPerFold[Table], LearnedPerFold[np.ndarray]],
    ) -> None:
        self.client = chromadb.PersistentClient(path=folder)
        self.embedder, self.raw_frames, self.enrichments, self.label = embedder, raw_frames, enrichments, label
        self.questions, self.learned = questions, learned
        self.cache: dict[CorpusVariant, tuple[dict[str, NamespaceCorpus], list[Prepared]]] = {}

    def get(self, variant: CorpusVariant) -> tuple[dict[str, NamespaceCorpus], list[Prepared]]:
        if variant not in self.cache:
            self.cache[variant] = self._build(variant)
        return self.cache[variant]

    def _build(self, variant: CorpusVariant) -> tuple[dict[str, NamespaceCorpus], list[Prepared]]:
        index = SemanticIndex(self.client, self.embedder, f"variant-{len(self.cache)}")
        corpora = {}
        with abbreviations_without(variant.words()):
            for namespace, raw in self.raw_frames.items():
                records = None if self.enrichments is None else self.enrichments.get(namespace, {})
                frame, _ = enrich(raw, records, self.label)
                index.sync(namespace, frame if variant.label_values else frame.assign(label_values=""))
                corpora[namespace] = load_corpus(index, namespace)
            vectors = question_vectors(self.questions, corpora, self.embedder)
            return corpora, prepare(self.questions, vectors, corpora, *self.learned)


def corpus_tables_out_of_fold(
    variants: CorpusVariants, chosen: Mapping[str, RankingParams], services: Sequence[str], labelled: set[str]
) -> dict[str, Any]:
    """The label values in the vectors (text.embedding_text) and each group of LATE_ABBREVIATIONS, checked like the
    cue families: kept for a service when they raise the other services' mean MRR. Without them, the corpora are
    enriched, embedded and indexed again (CorpusVariants). `labelled`: the namespaces with label values."""

    def reciprocal_ranks(params: RankingParams, dropped: frozenset[str]) -> np.ndarray:
        corpora, prepared = variants.get(CorpusVariant.without(dropped))
        return ranked_reciprocal_ranks(prepared, corpora, params, [p.signals for p in prepared])

    questions = variants.get(CorpusVariant())[1]
    using = {LABEL_VALUES: sum(p.query.namespace in labelled for p in questions)}
    for group, words in LATE_ABBREVIATIONS.items():
        users = {
            ns
            for ns, raw in variants.raw_frames.items()
            if any(set(words) & set(split_name(n)) for n in raw["metric_name"])
        }
        using[group] = sum(p.query.namespace in users for p in questions)
    return kept_out_of_fold(list(using), reciprocal_ranks, chosen, service_columns(questions, services), using)


def out_of_fold_text(title: str, report: Mapping[str, Any], counted: str, folds: int) -> str:
    """What kept_out_of_fold found, for people: `title` names the families ("question-cue families")."""
    questions, held_out = report["questions"], report["held_out"]
    return "\n".join([
        f"{title.capitalize()} kept out of fold (kept for a service when they raise the other services' mean MRR):",
        *(f"  {f}: kept on {k} of {folds} folds ({questions[f]} questions {counted})"
          for f, k in report["kept_on_folds"].items()),
        f"  ours with each fold's {title}: recall@5 {held_out['recall@5']:.3f} / MRR {held_out['mrr']:.3f}",
    ])  # fmt: skip


def misses(
    prepared: Sequence[Prepared], corpora: Mapping[str, NamespaceCorpus], chosen: Mapping[str, RankingParams]
) -> list[str]:
    """Questions whose first relevant metric is not first under the setting chosen without their service."""
    lines = []
    for p in prepared:
        corpus = corpora[p.query.namespace]
        params = chosen.get(p.query.namespace, chosen["(all services)"])
        ranked = [corpus.names[doc] for doc in answered_documents(corpus, p.query.query, p.signals, params, DEPTH)]
        rr = reciprocal_rank(ranked, p.query.relevant)
        if rr < 1:
            where = f"rank {round(1 / rr)}" if rr else "rank >10"
            lines.append(f"{p.query.namespace} {p.query.query!r}: {where}, first {ranked[:2]}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
