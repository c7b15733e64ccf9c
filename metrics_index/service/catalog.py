"""The namespaces a long-running process keeps warm for search, each tagged with the revision it was read at.

A namespace is read from the semantic index at its first search. Every later search compares the namespace's
current revision (an O(1) read) with the one it holds; when they differ, the namespace is re-read in a
background thread while searches keep being answered from the copy in memory, then swapped in at once: a
re-index never empties an answer and never makes searches wait.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics_index.search import NamespaceCorpus, SearchResult, load_corpus, rank
from metrics_index.stores.semantic_index import SemanticIndex

log = logging.getLogger(__name__)

QUESTION_VECTORS_CACHED = 4096  # recent questions whose embedding is kept (agents repeat themselves)


@dataclass(frozen=True)
class WarmNamespace:
    corpus: NamespaceCorpus
    revision: Any
    loaded_at: float
    load_seconds: float


class UnknownNamespaceError(LookupError):
    """The namespace has no documents in the semantic index."""


LoadListener = Callable[[str, float, int], None]


class WarmCatalog:
    """Warm namespaces over one semantic index. `revision(namespace)` changes when a namespace was re-indexed
    (the counter the index asset bumps in Redis, stores/revision.py)."""

    def __init__(
        self, index: SemanticIndex, revision: Callable[[str], Any], on_load: LoadListener | None = None
    ) -> None:
        self.index = index
        self._revision = revision
        self._on_load = on_load
        self._warm: dict[str, WarmNamespace] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._embed = functools.lru_cache(maxsize=QUESTION_VECTORS_CACHED)(self._embed_question)

    def namespaces(self) -> dict[str, WarmNamespace]:
        return dict(self._warm)

    def search(self, namespace: str, question: str, k: int = 10, explain: bool = False) -> list[SearchResult]:
        warm = self.get(namespace)
        return rank(warm.corpus, question, self._embed(question), k=k, explain=explain)

    def get(self, namespace: str) -> WarmNamespace:
        """The namespace in memory: read now if it is not yet, refreshed in the background if it changed."""
        revision = self._revision(namespace)
        warm = self._warm.get(namespace)
        if warm is None:
            with self._lock(namespace):
                warm = self._warm.get(namespace) or self._load(namespace, revision)
        elif warm.revision != revision:
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
        corpus = load_corpus(self.index, namespace)
        if corpus is None:
            raise UnknownNamespaceError(namespace)
        seconds = time.perf_counter() - started
        warm = WarmNamespace(corpus, revision, time.time(), seconds)
        self._warm[namespace] = warm
        log.info("namespace %s loaded: %d documents in %.2f s", namespace, len(corpus.names), seconds)
        if self._on_load:
            self._on_load(namespace, seconds, len(corpus.names))
        return warm

    def _lock(self, namespace: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(namespace, threading.Lock())

    def _embed_question(self, question: str) -> np.ndarray:
        vector = self.index.embedder.embed([question])[0]
        vector.flags.writeable = False
        return vector
