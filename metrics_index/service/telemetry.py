"""The service's own Prometheus metrics, on a registry of its own (one per app, so tests can build many).

Requests by endpoint, namespace and status, with latency histograms; results returned and zero-result searches;
namespace loads and their duration; namespaces and documents held in memory; and, read from the catalog at
scrape time, what the last enrichment run of each namespace cost (tokens, cost, fallbacks).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from metrics_index.service.limits import BadRequest, NotFound

if TYPE_CHECKING:
    from metrics_index.service.core import CatalogService

log = logging.getLogger(__name__)

PREFIX = "metrics_index_service"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
ENRICHMENT_REFRESH_SECONDS = 60.0
OTHER_NAMESPACE = "-"  # the label of requests whose namespace was refused: a caller cannot grow the label set
LLM_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


class Telemetry:
    def __init__(self, service: CatalogService) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.requests = Counter(
            f"{PREFIX}_requests", "API requests answered", ["endpoint", "namespace", "status"], registry=self.registry
        )
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time to answer an API request",
            ["endpoint", "namespace"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.results = Counter(
            f"{PREFIX}_search_results", "Search results returned", ["namespace"], registry=self.registry
        )
        self.zero_results = Counter(
            f"{PREFIX}_zero_result_searches", "Searches that returned nothing", ["namespace"], registry=self.registry
        )
        self.loads = Histogram(
            f"{PREFIX}_namespace_load_duration_seconds",
            "Time to read a namespace into memory (first use or after a re-index)",
            ["namespace"],
            buckets=LOAD_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_HeldCollector(service))
        self.registry.register(_EnrichmentCollector(service))
        service.load_listeners.append(
            lambda namespace, seconds, _documents: self.loads.labels(namespace).observe(seconds)
        )
        service.search_listeners.append(self._searched)

    @contextmanager
    def request(self, endpoint: str, namespace: str) -> Iterator[None]:
        started = time.perf_counter()
        status = "500"
        try:
            yield
            status = "200"
        except Exception as error:
            status = str(getattr(error, "status", None) or _status_of(error))
            raise
        finally:
            label = namespace if status == "200" else OTHER_NAMESPACE
            self.requests.labels(endpoint, label, status).inc()
            self.latency.labels(endpoint, label).observe(time.perf_counter() - started)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _searched(self, namespace: str, results: int) -> None:
        self.results.labels(namespace).inc(results)
        if not results:
            self.zero_results.labels(namespace).inc()


def _status_of(error: Exception) -> int:
    return 400 if isinstance(error, BadRequest) else 404 if isinstance(error, NotFound) else 500


class _HeldCollector:
    """Namespaces and documents held in memory, read when scraped."""

    def __init__(self, service: CatalogService) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        warm = self.service.catalog.namespaces()
        yield GaugeMetricFamily(f"{PREFIX}_namespaces_held", "Namespaces held in memory", value=len(warm))
        documents = GaugeMetricFamily(f"{PREFIX}_documents_held", "Documents held in memory", labels=["namespace"])
        for namespace, entry in sorted(warm.items()):
            documents.add_metric([namespace], len(entry.corpus.names))
        yield documents


class _EnrichmentCollector:
    """What the last enrichment run of each indexed namespace reported (LLM tokens and cost, fallbacks), read
    from the Dagster instance's materializations and cached for a minute."""

    def __init__(self, service: CatalogService) -> None:
        self.service = service
        self._cached: tuple[float, dict[str, dict[str, float]]] = (0.0, {})

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tokens = GaugeMetricFamily(
            f"{PREFIX}_enrichment_last_run_tokens",
            "LLM tokens of the last enrichment run",
            labels=["namespace", "kind"],
        )
        cost = GaugeMetricFamily(
            f"{PREFIX}_enrichment_last_run_cost_usd",
            "Estimated LLM cost of the last enrichment run",
            labels=["namespace"],
        )
        fallbacks = GaugeMetricFamily(
            f"{PREFIX}_enrichment_last_run_fallbacks",
            "Metrics the last enrichment run indexed with rules after the enricher failed on them",
            labels=["namespace"],
        )
        for namespace, values in sorted(self._last_runs().items()):
            for kind in LLM_FIELDS:
                tokens.add_metric([namespace, kind.removesuffix("_tokens")], values.get(f"llm_{kind}", 0.0))
            cost.add_metric([namespace], values.get("llm_cost_usd", 0.0))
            fallbacks.add_metric([namespace], values.get("failed", 0.0))
        yield from (tokens, cost, fallbacks)

    def _last_runs(self) -> dict[str, dict[str, float]]:
        read_at, runs = self._cached
        if time.monotonic() - read_at > ENRICHMENT_REFRESH_SECONDS:
            try:
                runs = self.service.last_enrichment_runs()
            except Exception:  # the metrics page must answer even when the instance cannot be read
                log.exception("reading the last enrichment runs failed")
            self._cached = (time.monotonic(), runs)
        return runs
