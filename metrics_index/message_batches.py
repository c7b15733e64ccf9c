"""The Message Batches sensor: materializes a namespace again once the batch its catalog waits on has ended.

A first (or forced) Claude enrichment of many metrics goes through the Message Batches API: the enrichment
asset indexes the namespace with the rules at once, submits the batch and lists the batches its rows wait on in
its metadata (`message_batches`). This sensor asks the API about each; when one has ended it requests a run of
that partition, whose enrichment takes the answers in. All it needs is in the Dagster instance and at the API,
so a batch submitted before a restart (or by another machine) is still collected.
"""

from dagster import (
    AssetRecordsFilter,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from metrics_index.assets import enriched_metric_metadata
from metrics_index.enrichment.base import DeferredEnricher
from metrics_index.jobs import run_tags
from metrics_index.namespaces import NAMESPACE_PARTITIONS
from metrics_index.resources import EnricherResource
from metrics_index.settings import PlatformSettings

POLL_SECONDS = 300
"""How often the sensor asks about running batches (most end within an hour; all within 24 hours)."""
BATCHES_METADATA = "message_batches"


def pending_batches(instance: DagsterInstance) -> dict[str, str]:
    """Each batch the latest enrichment of a namespace waits on, with that namespace."""
    pending = {}
    for namespace in instance.get_dynamic_partitions(NAMESPACE_PARTITIONS.name):
        latest = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=enriched_metric_metadata.key, asset_partitions=[namespace]), limit=1
        ).records
        materialization = latest[0].asset_materialization if latest else None
        entry = materialization.metadata.get(BATCHES_METADATA) if materialization else None
        pending.update(dict.fromkeys(entry.value if entry is not None else [], namespace))
    return pending


def build_message_batch_sensor(job: UnresolvedAssetJobDefinition, settings: PlatformSettings) -> SensorDefinition:
    @sensor(
        name="message_batch_sensor",
        job=job,
        minimum_interval_seconds=POLL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING if settings.automation else DefaultSensorStatus.STOPPED,
        description="Re-materializes a namespace when the Message Batch its Claude enrichment waits on has ended.",
    )
    def message_batch_sensor(context: SensorEvaluationContext, enricher: EnricherResource) -> SensorResult:
        pending = pending_batches(context.instance)
        if not pending:
            return SensorResult(skip_reason="no namespace waits on a Message Batch")
        claude = enricher.build()
        if not isinstance(claude, DeferredEnricher):
            return SensorResult(skip_reason=f"{len(pending)} batches wait, but the enricher cannot read them")
        ended = {batch: namespace for batch, namespace in sorted(pending.items()) if claude.batch_ended(batch)}
        tags = run_tags(enricher)
        runs = [RunRequest(run_key=f"collect-{batch}", partition_key=ns, tags=tags) for batch, ns in ended.items()]
        return SensorResult(
            run_requests=runs or None,
            skip_reason=None if runs else f"{len(pending)} Message Batches still running",
        )

    return message_batch_sensor
