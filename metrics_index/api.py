"""The Python API behind the CLI: index a namespace through Dagster (its four assets and their checks, as the
platform runs them), search it, validate names and PromQL against it."""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
)
from dagster._core.errors import DagsterAssetCheckFailedError  # what a failed blocking check raises in process
from dagster._core.storage.defs_state.base import set_defs_state_storage
from redis import RedisError

from metrics_index import lookup
from metrics_index.asset_metadata import EnrichmentFigures, IndexFigures, RawFigures
from metrics_index.assets import METRIC_ASSETS, enriched_metric_metadata, metric_semantic_index, raw_metric_metadata
from metrics_index.checks import METRIC_CHECKS
from metrics_index.dagster_home import open_home
from metrics_index.enrichment.incremental import FALLBACK, enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.jobs import INDEX_JOB, SOURCE_TAG, build_index_job
from metrics_index.lookup import Validation, existing_redis, name_set_client, namespace_suggestions
from metrics_index.namespaces import NAMESPACE_PARTITIONS, Namespace, NamespaceError
from metrics_index.promql import QueryValidation, validate_query
from metrics_index.resources import ProgressResource, PrometheusResource, RedisResource
from metrics_index.search import SearchResult
from metrics_index.settings import dagster_home, resources_from_env
from metrics_index.sources import RawMetric
from metrics_index.sources.prometheus import select_metrics
from metrics_index.stores import revision
from metrics_index.stores.connections import StoreSettings
from metrics_index.stores.lock import Notify
from metrics_index.stores.name_set import NameSetCatalog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckOutcome:
    """One asset check's result in an index run."""

    asset: str
    name: str
    passed: bool
    severity: str  # ERROR or WARN
    blocking: bool
    summary: str

    @classmethod
    def from_evaluation(cls, evaluation: AssetCheckEvaluation) -> CheckOutcome:
        return cls(
            asset=evaluation.asset_key.path[-1],
            name=evaluation.check_name,
            passed=evaluation.passed,
            severity="ERROR" if evaluation.severity == AssetCheckSeverity.ERROR else "WARN",
            blocking=bool(evaluation.blocking),
            summary=evaluation.description or "",
        )


@dataclass
class IndexSummary:
    """What one index run did, for the CLI's summary block and for programs."""

    namespace: str
    total: int = 0
    processed: int = 0
    enriched: int = 0
    reused: int = 0
    failed: int = 0
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    usage: dict[str, float] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return (self.processed - self.failed) / self.processed if self.processed else 1.0

    @property
    def failed_checks(self) -> list[CheckOutcome]:
        """Integrity checks (ERROR) that failed: the catalog is not what a reader may rely on."""
        return [check for check in self.checks if not check.passed and check.severity == "ERROR"]


class ChecksFailed(RuntimeError):
    """A blocking check failed, so the run stopped before the steps after it touched their stores."""

    def __init__(self, namespace: str, checks: list[CheckOutcome]) -> None:
        self.namespace = namespace
        self.checks = checks
        failed = [c for c in checks if not c.passed and c.blocking]
        reasons = "; ".join(f"{c.name} on {c.asset}: {c.summary}" for c in failed)
        super().__init__(
            f"{namespace}: blocking check failed ({reasons}); the run stopped before the steps after "
            f"{', '.join(sorted({c.asset for c in failed}))}"
        )


def materialization_metadata(result: ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """The metadata each asset reported in a run, by asset name, as plain values."""
    return {
        event.materialization.asset_key.path[-1]: {k: v.value for k, v in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
    }


def dagster_instance(env: Mapping[str, str] = os.environ) -> DagsterInstance:
    """The instance in the Dagster home (settings.dagster_home), given the project's dagster.yaml (pools, run queue,
    telemetry off) when it has no configuration of its own, so CLI runs are kept and shown by `dagster dev` started
    on that home (deploy/dagster-home.sh does); made under the home's lock (dagster_home.py)."""
    return open_home(dagster_home(env))


def _forget_if_new(instance: DagsterInstance, namespace: str, new: bool) -> None:
    """Take away a partition registered by a first run that stored nothing, so no empty namespace is left behind."""
    if new and namespace not in instance.get_materialized_partitions(raw_metric_metadata.key):
        instance.delete_dynamic_partition(NAMESPACE_PARTITIONS.name, namespace)


def index_namespace(
    namespace: str,
    env: Mapping[str, str] = os.environ,
    limit: int | None = None,
    exclude: str | None = None,
    force: bool = False,
    progress: bool = False,
    instance: DagsterInstance | None = None,
    log_level: str = "CRITICAL",
    notify: Notify | None = None,
    allow_shrink: bool = False,
) -> IndexSummary:
    """Register the namespace as a partition and run the index job on it in this process: the four assets and their
    checks, as a sensor run does. A failed blocking check raises ChecksFailed before the steps after it run; the
    summary lists every check. The run is the namespace's only writer: a run of it elsewhere makes this one wait
    (telling `notify`) up to METRICS_INDEX_LOCK_WAIT_SECONDS, then fail with StoreBusyError. A first run that fails
    before anything was stored takes its new partition away again, so no empty namespace is left behind."""
    _check_selection(limit, exclude)
    resources = resources_from_env(env)
    _known_source(resources["prometheus"], namespace, env)  # refuse a bad or unknown namespace before registering it
    instance = instance or dagster_instance(env)
    resources["progress"] = ProgressResource(enabled=progress)
    definitions = Definitions(
        assets=METRIC_ASSETS,
        asset_checks=METRIC_CHECKS,
        jobs=[build_index_job(resources["enricher"])],
        resources=resources,
    )
    # Resolved against this instance's state storage, not one a disposed instance left current in this process.
    with set_defs_state_storage(instance.defs_state_storage):
        job = definitions.resolve_job_def(INDEX_JOB)
    run_id = str(uuid.uuid4())
    redis_resource: RedisResource = resources["redis"]
    with redis_resource.namespace_writer(namespace, notify):
        new = not instance.has_dynamic_partition(NAMESPACE_PARTITIONS.name, namespace)
        instance.add_dynamic_partitions(NAMESPACE_PARTITIONS.name, [namespace])
        try:
            result = job.execute_in_process(
                partition_key=namespace,
                instance=instance,
                run_id=run_id,
                run_config={
                    "loggers": {"console": {"config": {"log_level": log_level}}},
                    "ops": {
                        "raw_metric_metadata": {
                            "config": {"limit": limit, "exclude": exclude, "allow_shrink": allow_shrink}
                        },
                        "enriched_metric_metadata": {"config": {"force": force}},
                    },
                },
                tags={SOURCE_TAG: "cli"},
                raise_on_error=True,
            )
        except DagsterAssetCheckFailedError:
            _forget_if_new(instance, namespace, new)
            raise ChecksFailed(namespace, _check_outcomes(instance, run_id)) from None
        except BaseException:
            _forget_if_new(instance, namespace, new)
            raise
    metadata = materialization_metadata(result)
    raw = RawFigures.from_metadata(metadata[raw_metric_metadata.key.path[-1]])
    enriched = EnrichmentFigures.from_metadata(metadata[enriched_metric_metadata.key.path[-1]])
    index = IndexFigures.from_metadata(metadata[metric_semantic_index.key.path[-1]])
    return IndexSummary(
        namespace=namespace,
        total=raw.fetched,
        processed=raw.metrics,
        skipped=raw.fetched - raw.metrics,
        enriched=enriched.enriched + enriched.reused,
        reused=enriched.reused,
        failed=enriched.failed,
        indexed=index.indexed,
        unchanged=index.unchanged,
        removed=index.removed,
        usage=enriched.usage,
        durations={asset: values["duration_seconds"] for asset, values in metadata.items()},
        failures=enriched.failures,
        checks=[CheckOutcome.from_evaluation(e) for e in result.get_asset_check_evaluations()],
    )


def _check_outcomes(instance: DagsterInstance, run_id: str) -> list[CheckOutcome]:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
    return [CheckOutcome.from_evaluation(r.event_log_entry.dagster_event.event_specific_data) for r in records]


def _known_source(prometheus: PrometheusResource, namespace: str, env: Mapping[str, str]) -> None:
    """Refuse a namespace the registry does not know (and no Prometheus URL covers), naming the close ones."""
    try:
        prometheus.source(namespace)
    except NamespaceError as error:
        Namespace.parse(namespace)  # a malformed namespace: the rule alone says what is wrong
        suggestions = namespace_suggestions(namespace, env)
        if not suggestions:
            raise
        raise NamespaceError(f"{error}; did you mean {' or '.join(suggestions)}?") from None


def dry_run(
    namespace: str, env: Mapping[str, str] = os.environ, limit: int | None = None, exclude: str | None = None
) -> IndexSummary:
    """Fetch and enrich with rules, write nothing: what an index run would cover, without side effects."""
    Namespace.parse(namespace)
    _check_selection(limit, exclude)
    resources = resources_from_env(env)
    _known_source(resources["prometheus"], namespace, env)
    fetched = resources["prometheus"].fetch(namespace)
    raw = select_metrics(fetched, limit, exclude)
    frame, report = enrich_catalog(RawMetric.from_frame(raw), RulesEnricher(), RulesEnricher())
    return IndexSummary(
        namespace=namespace,
        total=len(fetched),
        processed=len(raw),
        skipped=len(fetched) - len(raw),
        enriched=int((frame["enricher"] != FALLBACK).sum()),
        failed=report.failed,
    )


def search_metrics(
    namespace: str, question: str, k: int = 10, explain: bool = False, env: Mapping[str, str] = os.environ
) -> list[SearchResult]:
    """lookup.search_metrics (it never creates a store: NotIndexed when the namespace has no documents), warm after
    the first search of a namespace, and still answering while another process re-indexes it: when the namespace's
    revision moves, it is read again once no writer holds the store; until then the copy in memory answers."""
    Namespace.parse(namespace)
    client = existing_redis(StoreSettings.from_env(env))
    current = None
    if client is not None:
        try:
            current = revision.read(client, namespace)
        except RedisError as error:
            log.warning("cannot read the revision of %s (%s); answering from what is in memory", namespace, error)
    return lookup.search_metrics(namespace, question, k=k, explain=explain, env=env, revision=current)


def validate_metrics(namespace: str, names: Sequence[str], env: Mapping[str, str] = os.environ) -> list[Validation]:
    """Exact-match answers from the Redis name set; unknown names come with close matches. NotIndexed when the
    namespace has no name set (no store is created)."""
    return lookup.validate_metrics(namespace, names, env)


def validate_promql(namespace: str, expression: str, env: Mapping[str, str] = os.environ) -> QueryValidation:
    """Parse a PromQL expression and check its metric names, label names and `=` values against the namespace's
    name set and label schemas in Redis: each problem with its position and close matches."""
    return validate_query(expression, NameSetCatalog(name_set_client(namespace, env), namespace), namespace)


def _check_selection(limit: int | None, exclude: str | None) -> None:
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1 metric, not {limit}")
    if exclude:
        try:
            re.compile(exclude)
        except re.error as error:
            raise ValueError(f"--exclude {exclude!r} is not a valid regular expression: {error}") from None
