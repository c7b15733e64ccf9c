"""The four per-namespace assets: raw metadata → Redis name set, and raw → enriched → Chroma index."""

from time import perf_counter

import pandas as pd
from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    Output,
    ResourceParam,
    asset,
)
from redis import RedisError

from metrics_index import search_snapshot
from metrics_index.asset_metadata import EnrichmentFigures, IndexFigures, NameSetFigures, RawFigures
from metrics_index.enrichment.incremental import enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.io import PARQUET_IO, ParquetIOManager
from metrics_index.label_preference import with_label_columns
from metrics_index.namespaces import NAMESPACE_PARTITIONS
from metrics_index.promql import hints_for
from metrics_index.resources import (
    CHROMA_POOL,
    ChromaResource,
    EnricherResource,
    ProgressResource,
    PrometheusResource,
    RedisResource,
)
from metrics_index.sources import RawMetric, SourceError
from metrics_index.sources.base import CONFLICTING_TYPES
from metrics_index.sources.labels import LabelFetch, label_stats, name_set_labels, with_labels
from metrics_index.sources.prometheus import select_metrics, shrink_problem
from metrics_index.stores import revision
from metrics_index.stores.name_set import promql_names, replace_names

GROUP = "metrics_index"
_FAILURES_LISTED = 50


class SelectionConfig(Config):
    limit: int | None = None
    """Keep only the first N metrics by name (for a trial run)."""
    exclude: str | None = None
    """Leave out metrics whose name matches this regular expression."""
    allow_empty: bool = False
    """Accept a namespace with no metrics, which empties its name set and index. Off by default: an empty
    answer is more often a wrong selector or a Prometheus that has not scraped yet than a retired service."""
    allow_shrink: bool = False
    """Accept losing more than the resource's `max_shrink_share` of the namespace's metrics in one run. Off by
    default for the same reason as `allow_empty`: a collapse is more often a broken answer than a change."""


@asset(partitions_def=NAMESPACE_PARTITIONS, group_name=GROUP, io_manager_key=PARQUET_IO)
def raw_metric_metadata(
    context: AssetExecutionContext,
    config: SelectionConfig,
    prometheus: PrometheusResource,
    parquet_io_manager: ResourceParam[ParquetIOManager],
) -> Output[pd.DataFrame]:
    """Name, type, help and unit of every metric in the namespace, from Prometheus (or its snapshot), and its label
    schema (`labels`, JSON) from the namespace's series. Labels that cannot be read leave `labels` empty and the
    reason in the metadata: they never fail the run."""
    started = perf_counter()
    fetched = prometheus.fetch(context.partition_key)
    frame = select_metrics(fetched, config.limit, config.exclude)
    if frame.empty and not config.allow_empty:
        raise Failure(
            f"no metrics for {context.partition_key} (fetched {len(fetched)}, none left after --limit/--exclude)"
            if len(fetched)
            else f"Prometheus returned no metrics for {context.partition_key}: check its selector in the registry. "
            "Nothing downstream was changed; set allow_empty to empty the namespace on purpose."
        )
    previous, unreadable = parquet_io_manager.load_previous(context.asset_key.path[-1], context.partition_key)
    if previous is not None and not (config.allow_shrink or config.allow_empty):
        problem = shrink_problem(context.partition_key, len(previous), len(frame), prometheus.max_shrink_share)
        if problem:
            raise Failure(problem)
    conflicts = frame.loc[frame[CONFLICTING_TYPES] != "", ["metric_name", CONFLICTING_TYPES]].head(_FAILURES_LISTED)
    try:
        labels = prometheus.fetch_labels(context.partition_key, frame)
    except SourceError as error:
        labels = LabelFetch({}, errors=[str(error)])
    for error in labels.errors:
        context.log.warning(f"labels of {context.partition_key}: {error}")
    frame = with_labels(frame, labels.schemas)
    figures = RawFigures(
        fetched=len(fetched),
        metrics=len(frame),
        with_help=int((frame["help"] != "").sum()),
        types=frame["type"].value_counts().to_dict(),
        **label_stats(frame),
        label_requests=labels.requests,
        label_seconds=labels.seconds,
        label_errors="; ".join(labels.errors),
        duration_seconds=round(perf_counter() - started, 3),
        previous_metrics=len(previous) if previous is not None else 0,
        conflicting_types=dict(conflicts.itertuples(index=False, name=None)),
        warning=unreadable,
    )
    return Output(frame, metadata=figures.metadata())


@asset(partitions_def=NAMESPACE_PARTITIONS, group_name=GROUP)
def metric_name_set(
    context: AssetExecutionContext, raw_metric_metadata: pd.DataFrame, redis: RedisResource
) -> MaterializeResult:
    """The namespace's metric names and their label schemas in Redis for validation, replaced atomically together."""
    started = perf_counter()
    labels = name_set_labels(raw_metric_metadata)
    try:
        with redis.namespace_writer(context.partition_key, context.log.warning):
            size = replace_names(redis.client(), context.partition_key, promql_names(raw_metric_metadata), labels)
    except RedisError as error:
        raise Failure(
            f"Redis failed while replacing the name set of {context.partition_key}: {str(error).rstrip('.')}. "
            "The live set is untouched or fully replaced, never partial; rerun when Redis is back."
        ) from error
    figures = NameSetFigures(
        metrics=len(raw_metric_metadata),
        names=size,
        names_with_labels=len(labels),
        duration_seconds=round(perf_counter() - started, 3),
    )
    return MaterializeResult(metadata=figures.metadata())


class EnrichmentConfig(Config):
    force: bool = False
    """Re-enrich every metric, even those whose inputs did not change since the last materialization."""


@asset(partitions_def=NAMESPACE_PARTITIONS, group_name=GROUP, io_manager_key=PARQUET_IO)
def enriched_metric_metadata(
    context: AssetExecutionContext,
    config: EnrichmentConfig,
    raw_metric_metadata: pd.DataFrame,
    enricher: EnricherResource,
    parquet_io_manager: ResourceParam[ParquetIOManager],
    progress: ProgressResource,
) -> Output[pd.DataFrame]:
    """Every metric described in the controlled vocabularies. A metric the enricher fails on is enriched by
    rules instead (enricher=fallback, reason in `error`) and retried first on the next run."""
    started = perf_counter()
    previous, unreadable = parquet_io_manager.load_previous(context.asset_key.path[-1], context.partition_key)
    if unreadable:
        context.log.warning(f"{unreadable}: every metric is enriched again")
    primary = enricher.build()
    with progress.bar(f"enrich ({primary.name})", len(raw_metric_metadata)) as advance:
        frame, report = enrich_catalog(
            RawMetric.from_frame(raw_metric_metadata), primary, RulesEnricher(), previous, config.force, advance
        )
    frame = with_label_columns(frame, raw_metric_metadata)
    frame["promql_hint"] = hints_for(frame)
    for name, reason in report.failures.items():
        context.log.warning(f"enrichment of {name} failed, indexed with rules: {reason}")
    listed = dict(sorted(report.failures.items())[:_FAILURES_LISTED])
    figures = EnrichmentFigures(
        enricher=primary.name,
        metrics=report.total,
        reused=report.reused,
        enriched=report.enriched,
        failed=report.failed,
        success_rate=round(1 - report.failed / report.total, 4) if report.total else 1.0,
        failures=listed,
        usage=report.usage.as_dict(),
        **label_stats(frame),
        awaiting_batch=report.awaiting,
        message_batches=report.batches,
        duration_seconds=round(perf_counter() - started, 3),
        warning=unreadable,
    )
    return Output(frame, metadata=figures.metadata())


@asset(partitions_def=NAMESPACE_PARTITIONS, group_name=GROUP, deps=[metric_name_set], pool=CHROMA_POOL)
def metric_semantic_index(
    context: AssetExecutionContext,
    enriched_metric_metadata: pd.DataFrame,
    chroma: ChromaResource,
    redis: RedisResource,
    progress: ProgressResource,
) -> MaterializeResult:
    """The enriched metrics embedded into Chroma; unchanged documents are skipped, vanished ones deleted.
    Runs after the name set, so a failed Redis update leaves the index as it was too. Holds the namespace's
    writer lease and the store's lock (stores/lock.py); each completed sync bumps the namespace's revision
    (stores/revision.py), which tells readers to reload."""
    started = perf_counter()
    namespace = context.partition_key

    def tell(message: str) -> None:  # a wait for another writer: routine when runs take turns on the store's lock
        context.log.info(message)
        progress.note(message)

    with (
        redis.namespace_writer(namespace, tell),
        search_snapshot.refreshing(chroma.snapshot_dir, chroma.index(), namespace, tell) as record_snapshot,
    ):
        with progress.bar("index", len(enriched_metric_metadata)) as advance:
            report = chroma.index().sync(
                namespace, enriched_metric_metadata, batch_size=chroma.batch_size, progress=advance, notify=tell
            )
        try:
            current = revision.bump(redis.client(), namespace)
        except RedisError as error:
            raise Failure(
                f"the index of {namespace} is synced but Redis failed while recording its revision: "
                f"{str(error).rstrip('.')}. Readers keep the previous version until a rerun records it."
            ) from error
        record_snapshot(current)
    figures = IndexFigures(
        metrics=report.total,
        indexed=report.indexed,
        unchanged=report.unchanged,
        removed=report.removed,
        revision=current,
        duration_seconds=round(perf_counter() - started, 3),
    )
    return MaterializeResult(metadata=figures.metadata())


METRIC_ASSETS = [raw_metric_metadata, metric_name_set, enriched_metric_metadata, metric_semantic_index]
