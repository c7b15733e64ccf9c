"""The one Definitions object: start reading here."""

from dagster import Definitions, define_asset_job

from metrics_index.assets import METRIC_ASSETS
from metrics_index.namespaces import NAMESPACE_PARTITIONS
from metrics_index.settings import resources_from_env

index_namespace_job = define_asset_job("index_namespace", selection=METRIC_ASSETS, partitions_def=NAMESPACE_PARTITIONS)

defs = Definitions(
    assets=METRIC_ASSETS,
    jobs=[index_namespace_job],
    resources=resources_from_env(),
)
