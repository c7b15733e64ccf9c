"""The index job (one run materializes and checks one namespace) and the tags its runs carry.

The sensor, the schedule and the CLI all start runs of this job's assets; the run queue in dagster.yaml limits
runs by these tags.
"""

from dagster import define_asset_job, in_process_executor
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from metrics_index.assets import METRIC_ASSETS
from metrics_index.enrichment.select import resolve_mode
from metrics_index.namespaces import NAMESPACE_PARTITIONS
from metrics_index.resources import EnricherResource

INDEX_JOB = "index_namespace"
ENRICHER_TAG = "metrics-index/enricher"
"""Which enricher a run uses; dagster.yaml caps the number of concurrent runs tagged `claude`."""
SOURCE_TAG = "metrics-index/source"
"""Who started a run outside the sensor and the schedule (`cli` for `metrics-index index` and the Python API)."""


def run_tags(enricher: EnricherResource) -> dict[str, str]:
    """Tags for the run queue: the enricher the run will use (one run per namespace comes from the
    `dagster/partition` tag Dagster sets itself)."""
    try:
        name = resolve_mode(enricher.mode)
    except ValueError:  # misconfigured (e.g. mode 'claude' without a key): the run itself fails and says why
        name = enricher.mode
    return {ENRICHER_TAG: name}


def build_index_job(enricher: EnricherResource) -> UnresolvedAssetJobDefinition:
    """The namespace's four assets (their checks come with them), tagged with the enricher they use, all steps in
    the run's own process: with the multiprocess executor each of a run's eight steps started a process that
    imported the project and loaded the embedding model again, so a sensor run took minutes where the CLI takes
    seconds (bench/platform_throughput.py). The steps are a chain; running them side by side gained nothing."""
    return define_asset_job(
        INDEX_JOB,
        selection=METRIC_ASSETS,
        partitions_def=NAMESPACE_PARTITIONS,
        tags=run_tags(enricher),
        executor_def=in_process_executor,
    )
