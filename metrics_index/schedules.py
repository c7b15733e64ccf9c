"""The regular re-index of every registered namespace.

A schedule cannot add partitions (only the namespace sensor does): it reads the namespaces already registered
and requests one run per namespace. Unchanged metrics are reused by the enrichment, so a daily run costs little.
"""

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from metrics_index.jobs import run_tags
from metrics_index.namespaces import NAMESPACE_PARTITIONS
from metrics_index.resources import EnricherResource
from metrics_index.settings import PlatformSettings


def build_index_schedule(job: UnresolvedAssetJobDefinition, settings: PlatformSettings) -> ScheduleDefinition:
    @schedule(
        name="index_all_namespaces",
        job=job,
        cron_schedule=settings.schedule_cron,
        execution_timezone=settings.schedule_timezone,
        default_status=DefaultScheduleStatus.RUNNING if settings.automation else DefaultScheduleStatus.STOPPED,
        description="Re-index every registered namespace (one run each); unchanged metrics are reused.",
    )
    def index_all_namespaces(
        context: ScheduleEvaluationContext, enricher: EnricherResource
    ) -> list[RunRequest] | SkipReason:
        namespaces = sorted(context.instance.get_dynamic_partitions(NAMESPACE_PARTITIONS.name))
        if not namespaces:
            return SkipReason("no namespace is registered yet: the namespace sensor adds them")
        tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
        tags = run_tags(enricher)
        return [
            RunRequest(run_key=f"{namespace}@{tick}", partition_key=namespace, tags=tags) for namespace in namespaces
        ]

    return index_all_namespaces
