"""The one Definitions object: start reading here."""

from dagster import Definitions

from metrics_index.assets import METRIC_ASSETS
from metrics_index.checks import METRIC_CHECKS
from metrics_index.golden import golden_queries
from metrics_index.jobs import build_index_job
from metrics_index.message_batches import build_message_batch_sensor
from metrics_index.schedules import build_index_schedule
from metrics_index.sensors import build_alert_sensor, build_namespace_sensor
from metrics_index.settings import platform_settings_from_env, resources_from_env

platform = platform_settings_from_env()
resources = resources_from_env(platform=True)

index_namespace_job = build_index_job(resources["enricher"])

defs = Definitions(
    assets=[*METRIC_ASSETS, golden_queries],
    asset_checks=METRIC_CHECKS,
    jobs=[index_namespace_job],
    schedules=[build_index_schedule(index_namespace_job, platform)],
    sensors=[
        build_namespace_sensor(index_namespace_job, platform),
        build_alert_sensor(platform),
        build_message_batch_sensor(index_namespace_job, platform),
    ],
    resources=resources,
)
