"""The service's operations, shared by the HTTP API and the MCP server: list namespaces, search, validate names,
one metric's card, feedback. Each checks its input and raises `BadRequest` or `NotFound`, which the transports
turn into a 4xx answer with the message; each search is logged as one JSON line."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from metrics_index.enrichment.vocabulary import ENRICHED_COLUMNS, PROVENANCE_COLUMNS
from metrics_index.feedback import FEEDBACK_FILE, QUERY_LOG_FILE, FeedbackStore, QueryLog, record_feedback
from metrics_index.lookup import (
    Validation,
    not_indexed_advice,
    redis_client,
    semantic_index,
    snapshot_corpus,
    validate_names,
)
from metrics_index.search import SearchResult
from metrics_index.service.catalog import UnknownNamespaceError, WarmCatalog
from metrics_index.service.limits import (
    MAX_K,
    MAX_NAME_CHARS,
    MAX_NAMES,
    BadRequest,
    NotFound,
    check_question,
    parse_namespace,
)
from metrics_index.stores import revision
from metrics_index.stores.connections import StoreSettings, metrics_home
from metrics_index.stores.name_set import indexed_namespaces, names_key

log = logging.getLogger(__name__)

ENRICHED_ASSET = "enriched_metric_metadata"


@dataclass(frozen=True)
class SearchAnswer:
    namespace: str
    question: str
    results: list[SearchResult]
    took_ms: float


class CatalogService:
    """One per process: the warm namespaces, the Redis name sets, the Parquet catalog, the query log, feedback."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        self.env = dict(env)
        self.settings = StoreSettings.from_env(env)
        self.home = metrics_home(env)
        self.catalog_dir = self.home / "catalog"
        self.redis = redis_client(self.settings)
        self.catalog = WarmCatalog(
            semantic_index(self.settings),
            lambda namespace: revision.read(self.redis, namespace),
            self._loaded,
            lambda namespace, current: snapshot_corpus(self.settings, namespace, current),
        )
        self.query_log = QueryLog(self.home / QUERY_LOG_FILE)
        self.feedback = FeedbackStore(self.home / FEEDBACK_FILE)
        self.load_listeners: list[Any] = []
        self.search_listeners: list[Any] = []
        self._cards: dict[str, tuple[int, dict[str, dict[str, Any]]]] = {}
        self._cards_lock = threading.Lock()

    # -- operations

    def list_namespaces(self) -> list[dict[str, Any]]:
        """Every namespace with a name set in Redis (indexed at least once), with what is held in memory."""
        warm = self.catalog.namespaces()
        indexed = indexed_namespaces(self.redis)
        with self.redis.pipeline(transaction=False) as pipe:
            for namespace in indexed:
                pipe.scard(names_key(namespace))
            sizes = pipe.execute()
        answer = []
        for namespace, names in zip(indexed, sizes, strict=True):
            item: dict[str, Any] = {"namespace": namespace, "names": names, "warm": namespace in warm}
            if namespace in warm:
                item["documents"] = len(warm[namespace].corpus.names)
            answer.append(item)
        return answer

    def search(self, namespace: str, question: str, k: int = 10, explain: bool = False) -> SearchAnswer:
        namespace = parse_namespace(namespace)
        question = check_question(question)
        if not 1 <= k <= MAX_K:
            raise BadRequest(f"k must be between 1 and {MAX_K}, got {k}")
        started = time.perf_counter()
        try:
            results = self.catalog.search(namespace, question, k=k, explain=explain)
        except UnknownNamespaceError:
            raise self._not_indexed(namespace) from None
        took_ms = (time.perf_counter() - started) * 1000
        self.query_log.write(namespace, question, k, [r.metric_name for r in results], took_ms)
        for listener in self.search_listeners:
            listener(namespace, len(results))
        return SearchAnswer(namespace, question, results, round(took_ms, 3))

    def validate(self, namespace: str, names: Sequence[str]) -> list[Validation]:
        namespace = parse_namespace(namespace)
        if not names or len(names) > MAX_NAMES:
            raise BadRequest(f"give between 1 and {MAX_NAMES} metric names, got {len(names)}")
        too_long = [name for name in names if not name or len(name) > MAX_NAME_CHARS]
        if too_long:
            raise BadRequest(f"a metric name has 1 to {MAX_NAME_CHARS} characters: {too_long[0][:40]!r}")
        if not self.redis.exists(names_key(namespace)):
            raise self._not_indexed(namespace) from None
        return validate_names(self.redis, namespace, names)

    def card(self, namespace: str, metric: str) -> dict[str, Any]:
        """The enriched record of one metric, as the last index run wrote it to the catalog."""
        namespace = parse_namespace(namespace)
        records = self._enriched_records(namespace)
        if metric not in records:
            raise NotFound(f"metric {metric!r} is not in the catalog of {namespace!r}")
        record = records[metric]
        card = {"namespace": namespace, **{column: record.get(column) or "" for column in ENRICHED_COLUMNS}}
        card["provenance"] = {column: _plain(record.get(column)) for column in PROVENANCE_COLUMNS}
        return card

    def add_feedback(self, namespace: str, question: str, metric: str, good: bool) -> dict[str, Any]:
        return record_feedback(self.feedback, self.redis, namespace, question, metric, good)

    def ready(self) -> dict[str, str]:
        """What /readyz checks: Redis answers, Chroma answers, the embedder is loaded."""
        checks = {}
        for name, probe in (
            ("redis", self.redis.ping),
            ("chroma", self.catalog.index.client.heartbeat),
            ("embedder", lambda: self.catalog.index.embedder.dimension),
        ):
            try:
                probe()
                checks[name] = "ok"
            except Exception as error:  # a probe's failure is the answer, whatever it is
                checks[name] = f"failed: {type(error).__name__}"
        return checks

    def last_enrichment_runs(self) -> dict[str, dict[str, float]]:
        """The numeric metadata (`failed`, `llm_*`) of each indexed namespace's last enrichment materialization,
        from the Dagster instance the index runs write to."""
        from dagster import AssetKey, AssetRecordsFilter

        from metrics_index.api import dagster_instance

        instance = dagster_instance(self.env)
        runs = {}
        for namespace in (item["namespace"] for item in self.list_namespaces()):
            found = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey(ENRICHED_ASSET), asset_partitions=[namespace]), limit=1
            ).records
            if found and found[0].asset_materialization:
                metadata = {key: value.value for key, value in found[0].asset_materialization.metadata.items()}
                runs[namespace] = {
                    key: float(value)
                    for key, value in metadata.items()
                    if (key == "failed" or key.startswith("llm_")) and isinstance(value, int | float)
                }
        return runs

    # -- helpers

    def _not_indexed(self, namespace: str) -> NotFound:
        """What to do, as the CLI says it: a namespace typo gets close namespaces from the registry and from those
        indexed; one the index command would refuse gets those indexed."""
        advice, suggestions = not_indexed_advice(namespace, self.env)
        return NotFound(f"namespace {namespace!r} is not indexed: {advice}", suggestions)

    def _enriched_records(self, namespace: str) -> dict[str, dict[str, Any]]:
        tenant, service = namespace.split(":")
        path = self.catalog_dir / ENRICHED_ASSET / tenant / f"{service}.parquet"
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            raise self._not_indexed(namespace) from None
        with self._cards_lock:
            cached = self._cards.get(namespace)
            if cached is None or cached[0] != stamp:
                frame = pd.read_parquet(path)
                cached = (stamp, {row["metric_name"]: row for row in frame.to_dict("records")})
                self._cards[namespace] = cached
        return cached[1]

    def _loaded(self, namespace: str, seconds: float, documents: int) -> None:
        for listener in self.load_listeners:
            listener(namespace, seconds, documents)


def result_dict(result: SearchResult) -> dict[str, Any]:
    return asdict(result)


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.isoformat() if hasattr(value, "isoformat") else value
