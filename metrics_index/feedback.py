"""Query log and feedback, kept as JSON lines in the home folder so that nothing is lost on a restart.

Every search the service answers is one line of `queries.jsonl` (namespace, question, k, top results, latency;
nothing secret) and also goes to the `metrics_index.queries` logger. Feedback (was `metric` a good answer to
`question`?) is one line of `feedback.jsonl`, flushed to disk before it is acknowledged. The `golden_queries`
asset reads both: confirmed feedback becomes golden queries, the log gives the most frequent and the
zero-result questions.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from metrics_index.service.limits import NotFound, check_metric_name, check_question, parse_namespace
from metrics_index.stores.name_set import all_names, close_matches, names_key

if TYPE_CHECKING:
    import redis

query_logger = logging.getLogger("metrics_index.queries")
QUERY_LOG_FILE = "queries.jsonl"
FEEDBACK_FILE = "feedback.jsonl"
TOP_RESULTS_LOGGED = 5


class _JsonLines:
    """An append-only file of JSON objects; each write is one `write` of one line, fsynced when asked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: TextIO | None = None

    def append(self, record: dict[str, Any], durable: bool = False) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line)
            self._file.flush()  # whole lines reach the file at once; readers never see half a record
            if durable:
                os.fsync(self._file.fileno())

    def records(self) -> Iterator[dict[str, Any]]:
        """Every complete line; a line cut short by a crash is skipped."""
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as file:
            for line in file:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue


class QueryLog(_JsonLines):
    def write(self, namespace: str, question: str, k: int, top: list[str], took_ms: float) -> None:
        record = {
            "ts": round(time.time(), 3),
            "namespace": namespace,
            "question": question,
            "k": k,
            "results": len(top),
            "top": top[:TOP_RESULTS_LOGGED],
            "took_ms": round(took_ms, 3),
        }
        self.append(record)
        query_logger.info(json.dumps(record, ensure_ascii=False, separators=(",", ":")))


def record_feedback(
    store: FeedbackStore, client: redis.Redis, namespace: str, question: str, metric: str, good: bool
) -> dict[str, Any]:
    """Check a vote (a valid namespace and question, a metric the namespace has) and store it durably."""
    namespace = parse_namespace(namespace)
    question = check_question(question)
    if not client.sismember(names_key(namespace), check_metric_name(metric)):
        suggestions = close_matches(all_names(client, namespace), metric)
        hint = f"; did you mean {' or '.join(suggestions)}?" if suggestions else ""
        raise NotFound(f"metric {metric!r} is not a known metric of {namespace!r}{hint}", suggestions)
    return store.add(namespace, question, metric, good)


class FeedbackStore(_JsonLines):
    def add(self, namespace: str, question: str, metric: str, good: bool) -> dict[str, Any]:
        record = {"ts": round(time.time(), 3), "namespace": namespace, "question": question, "metric": metric}
        record["good"] = bool(good)
        self.append(record, durable=True)
        return record


@dataclass(frozen=True)
class GoldenCandidate:
    question: str
    expected: tuple[str, ...]
    votes: int


def confirmed_golden_queries(
    feedback: list[dict[str, Any]], namespace: str, min_votes: int = 1
) -> list[GoldenCandidate]:
    """Questions whose metric has more good votes than bad, at least `min_votes` more, per question: the metrics
    so confirmed are the question's expected answers. The question is compared case- and space-insensitively."""
    balance: Counter[tuple[str, str]] = Counter()
    wording: dict[str, str] = {}
    for record in feedback:
        if record.get("namespace") != namespace:
            continue
        key = normalize_question(record["question"])
        wording.setdefault(key, record["question"])
        balance[key, record["metric"]] += 1 if record.get("good") else -1
    expected: dict[str, list[tuple[int, str]]] = {}
    for (key, metric), votes in balance.items():
        if votes >= min_votes:
            expected.setdefault(key, []).append((votes, metric))
    return [
        GoldenCandidate(
            wording[key], tuple(m for _, m in sorted(found, key=lambda x: (-x[0], x[1]))), sum(v for v, _ in found)
        )
        for key, found in sorted(expected.items())
    ]


def question_stats(queries: list[dict[str, Any]], namespace: str, top: int = 10) -> tuple[list[list], list[list]]:
    """The most frequent questions and the questions that found nothing, each with its count, most frequent first."""
    asked: Counter[str] = Counter()
    empty: Counter[str] = Counter()
    for record in queries:
        if record.get("namespace") != namespace:
            continue
        key = normalize_question(record["question"])
        asked[key] += 1
        if not record.get("results"):
            empty[key] += 1
    return [[q, n] for q, n in asked.most_common(top)], [[q, n] for q, n in empty.most_common(top)]


def normalize_question(question: str) -> str:
    return " ".join(question.lower().split())
