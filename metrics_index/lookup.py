"""Search and validate without Dagster: what `metrics-index search`/`validate`, the service and the MCP server call.

Importing this module loads nothing heavy; the stores, the embedder and the ranker are imported on first use, so a
one-shot CLI search pays only for what it touches.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from metrics_index.namespaces import Namespace
from metrics_index.stores.connections import StoreSettings, open_redis, open_semantic_index

if TYPE_CHECKING:
    import redis

    from metrics_index.search import SearchResult
    from metrics_index.stores.semantic_index import SemanticIndex


@dataclass(frozen=True)
class Validation:
    name: str
    known: bool
    suggestions: tuple[str, ...] = ()


@functools.cache
def semantic_index(settings: StoreSettings) -> SemanticIndex:
    """One Chroma client per process and store (a second embedded client on a directory can hang)."""
    return open_semantic_index(
        settings.chroma_path, settings.chroma_host, settings.chroma_port, settings.embedding_model
    )


@functools.cache
def redis_client(settings: StoreSettings) -> redis.Redis:
    return open_redis(settings.redis_url, settings.redis_embedded_path)


def search_metrics(
    namespace: str, question: str, k: int = 10, explain: bool = False, env: Mapping[str, str] = os.environ
) -> list[SearchResult]:
    from metrics_index.search import search

    Namespace.parse(namespace)
    return search(semantic_index(StoreSettings.from_env(env)), namespace, question, k=k, explain=explain)


def validate_metrics(namespace: str, names: Sequence[str], env: Mapping[str, str] = os.environ) -> list[Validation]:
    """Exact-match answers from the Redis name set; unknown names come with close matches."""
    Namespace.parse(namespace)
    return validate_names(redis_client(StoreSettings.from_env(env)), namespace, names)


def validate_names(client: redis.Redis, namespace: str, names: Sequence[str]) -> list[Validation]:
    from metrics_index.stores.name_set import all_names, close_matches, known_metrics

    answers = known_metrics(client, namespace, list(names))
    candidates: set[str] | None = None
    results = []
    for name in names:
        if answers[name]:
            results.append(Validation(name, True))
            continue
        candidates = candidates if candidates is not None else all_names(client, namespace)
        results.append(Validation(name, False, tuple(close_matches(candidates, name))))
    return results
