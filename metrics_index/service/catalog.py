"""The namespaces a long-running process keeps warm for search, each tagged with the revision it was read at.

A namespace is read from the semantic index at its first search. Later searches compare the namespace's
current revision (one Redis GET, made at most every REVISION_CHECK_SECONDS per namespace) with the one it holds;
when they differ, the namespace is re-read in a background thread while searches keep being answered from the
copy in memory, then swapped in at once: a re-index never empties an answer and never makes searches wait.
Answers are cached by (namespace, revision, question, k, explain), so a repeated question costs a dictionary
look-up and a new revision starts a new cache. A reload reads only what changed (search.load_corpus with the copy
held). The questions of concurrent searches are embedded together (BatchedEmbedder).
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics_index.embeddings import Embedder
from metrics_index.search import NamespaceCorpus, SearchResult, answer, load_corpus, query_text
from metrics_index.stores.semantic_index import SemanticIndex

log = logging.getLogger(__name__)

QUESTION_VECTORS_CACHED = 4096  # recent questions whose embedding is kept (agents repeat themselves)
ANSWERS_CACHED = 10_000  # recent answers, each a few hundred bytes
REVISION_CHECK_SECONDS = 0.2  # how stale a namespace's revision may be before it is read again


@dataclass
class WarmNamespace:
    corpus: NamespaceCorpus
    revision: Any
    loaded_at: float
    load_seconds: float
    checked_at: float = 0.0  # monotonic time its revision was last compared with the store's
    source: str = "store"  # where it was read from: "store" (Chroma) or "snapshot" (search_snapshot.py)


class UnknownNamespaceError(LookupError):
    """The namespace has no documents in the semantic index."""


LoadListener = Callable[[str, float, int], None]
SnapshotReader = Callable[[str, Any], NamespaceCorpus | None]  # (namespace, revision) -> its current snapshot


class WarmCatalog:
    """Warm namespaces over one semantic index. `revision(namespace)` changes when a namespace was re-indexed
    (the counter the index asset bumps in Redis, stores/revision.py). With `snapshot`, a namespace whose search
    snapshot is of the revision being loaded is read from it (one file, seconds at 50k metrics, where Chroma takes
    tens); otherwise, and for a reload the index run has not yet written a snapshot for, from the store."""

    def __init__(
        self,
        index: SemanticIndex,
        revision: Callable[[str], Any],
        on_load: LoadListener | None = None,
        snapshot: SnapshotReader | None = None,
    ) -> None:
        self.index = index
        self._revision = revision
        self._on_load = on_load
        self._snapshot = snapshot
        self._warm: dict[str, WarmNamespace] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._embed = functools.lru_cache(maxsize=QUESTION_VECTORS_CACHED)(BatchedEmbedder(index.embedder).embed)
        self._answers: OrderedDict[tuple, list[SearchResult]] = OrderedDict()
        self._answers_lock = threading.Lock()
        self.answers_hit = 0

    def namespaces(self) -> dict[str, WarmNamespace]:
        return dict(self._warm)

    def search(self, namespace: str, question: str, k: int = 10, explain: bool = False) -> list[SearchResult]:
        warm = self.get(namespace)
        key = (namespace, warm.revision, question, k, explain)
        with self._answers_lock:
            if key in self._answers:
                self._answers.move_to_end(key)
                self.answers_hit += 1
                return self._answers[key]
        results = answer(warm.corpus, question, self._embed(query_text(warm.corpus, question)), k=k, explain=explain)
        with self._answers_lock:
            self._answers[key] = results
            while len(self._answers) > ANSWERS_CACHED:
                self._answers.popitem(last=False)
        return results

    def get(self, namespace: str) -> WarmNamespace:
        """The namespace in memory: read now if it is not yet, refreshed in the background if it changed."""
        warm = self._warm.get(namespace)
        if warm is None:
            with self._lock(namespace):
                return self._warm.get(namespace) or self._load(namespace, self._revision(namespace))
        now = time.monotonic()
        if now - warm.checked_at < REVISION_CHECK_SECONDS:
            return warm
        warm.checked_at = now
        revision = self._revision(namespace)
        if warm.revision != revision:
            lock = self._lock(namespace)
            if lock.acquire(blocking=False):  # one refresh at a time; the others keep the copy they have
                threading.Thread(target=self._refresh, args=(namespace, revision, lock), daemon=True).start()
        return warm

    def _refresh(self, namespace: str, revision: Any, lock: threading.Lock) -> None:
        try:
            if self._warm[namespace].revision != revision:
                self._load(namespace, revision)
        except UnknownNamespaceError:
            self._warm.pop(namespace, None)
        except Exception:
            log.exception("refreshing namespace %s failed; still answering from the copy in memory", namespace)
        finally:
            lock.release()

    def _load(self, namespace: str, revision: Any) -> WarmNamespace:
        started = time.perf_counter()
        held = self._warm.get(namespace)
        source, corpus = "snapshot", self._snapshot(namespace, revision) if self._snapshot else None
        if corpus is None:
            source, corpus = "store", load_corpus(self.index, namespace, held.corpus if held else None)
        if corpus is None:
            raise UnknownNamespaceError(namespace)
        seconds = time.perf_counter() - started
        warm = WarmNamespace(corpus, revision, time.time(), seconds, time.monotonic(), source=source)
        self._warm[namespace] = warm
        how = "reloaded" if held else "loaded"
        log.info(
            "namespace %s %s from the %s: %d documents in %.2f s", namespace, how, source, len(corpus.names), seconds
        )
        if self._on_load:
            self._on_load(namespace, seconds, len(corpus.names))
        return warm

    def _lock(self, namespace: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(namespace, threading.Lock())


class BatchedEmbedder:
    """Embeds the questions of concurrent searches together: one thread runs the model on every question waiting
    when it gets to them (up to MAX_BATCH). On 2 busy cores 20 questions in one run cost about 6 runs of one, so
    20 clients' first asks no longer queue for the model one by one; a lone question is embedded at once."""

    MAX_BATCH = 64

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._waiting: queue.SimpleQueue[tuple[str, Future[np.ndarray]]] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="question-embedder", daemon=True).start()

    def embed(self, question: str) -> np.ndarray:
        answer: Future[np.ndarray] = Future()
        self._waiting.put((question, answer))
        return answer.result()

    def _run(self) -> None:
        while True:
            batch = [self._waiting.get()]
            while len(batch) < self.MAX_BATCH and not self._waiting.empty():
                batch.append(self._waiting.get_nowait())
            try:
                vectors = self.embedder.embed([question for question, _answer in batch])
            except Exception as error:  # each waiting search gets the model's error as its own
                for _question, answer in batch:
                    answer.set_exception(error)
                continue
            vectors.flags.writeable = False
            for (_question, answer), vector in zip(batch, vectors, strict=True):
                answer.set_result(vector)
