"""Resources configured from environment variables; every default is documented in the README."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dagster import ConfigurableResource, EnvVar

from metrics_index.enrichment.claude import ClaudeOptions
from metrics_index.io import PARQUET_IO, ParquetIOManager
from metrics_index.resources import (
    SLACK_WEBHOOK_ENV,
    CheckThresholds,
    ChromaResource,
    EnricherResource,
    FeedbackResource,
    ProgressResource,
    PrometheusResource,
    RedisResource,
    SlackResource,
)
from metrics_index.sources.prometheus import RequestLimits
from metrics_index.stores.connections import StoreSettings, metrics_home
from metrics_index.stores.lock import DEFAULT_WAIT_SECONDS


def dagster_home(env: Mapping[str, str] = os.environ) -> Path:
    """The Dagster home the CLI records its runs in: DAGSTER_HOME, else `dagster` in the metrics-index home."""
    if env.get("DAGSTER_HOME"):
        return Path(env["DAGSTER_HOME"]).expanduser().absolute()
    return metrics_home(env) / "dagster"


PLATFORM_LOCK_WAIT_SECONDS = 6 * 3600.0
"""How long a platform run's writer waits for the store (METRICS_INDEX_LOCK_WAIT_SECONDS overrides it). Embedded
Chroma's index steps take turns on the store's lock, not in Dagster's pool (dagster.yaml), so behind another run's
index of a large namespace (a 50k first index is minutes, more under load or beside other runs) a queued step
waits as it would have in the pool, rather than failing after the CLI's 600 s."""


def resources_from_env(env: Mapping[str, str] = os.environ, platform: bool = False) -> dict[str, ConfigurableResource]:
    """Every resource, configured from the environment; `platform` for the Dagster definitions (sensor and
    schedule runs), whose writers wait longer for a store another run writes (PLATFORM_LOCK_WAIT_SECONDS)."""
    home = metrics_home(env)
    default_wait = PLATFORM_LOCK_WAIT_SECONDS if platform else DEFAULT_WAIT_SECONDS
    lock_wait_seconds = float(env.get("METRICS_INDEX_LOCK_WAIT_SECONDS", default_wait))
    stores = StoreSettings.from_env(env)
    return {
        "prometheus": PrometheusResource(
            registry_path=env.get("METRICS_INDEX_REGISTRY", ""),
            url=env.get("METRICS_INDEX_PROMETHEUS_URL", ""),
            timeout_seconds=float(env.get("METRICS_INDEX_PROMETHEUS_TIMEOUT", "10")),
            max_bytes=int(env.get("METRICS_INDEX_PROMETHEUS_MAX_BYTES", RequestLimits.max_bytes)),
            redirects_to_other_hosts=_flag(env.get("METRICS_INDEX_PROMETHEUS_REDIRECTS_TO_OTHER_HOSTS")),
            max_shrink_share=float(env.get("METRICS_INDEX_MAX_SHRINK_SHARE", "0.5")),
        ),
        "redis": RedisResource(
            url=stores.redis_url,
            embedded_path=stores.redis_embedded_path,
            catalog_dir=stores.catalog_dir,
            lock_wait_seconds=lock_wait_seconds,
        ),
        "chroma": ChromaResource(
            path=stores.chroma_path,
            host=stores.chroma_host,
            port=stores.chroma_port,
            embedding_model=stores.embedding_model,
            snapshot_dir=stores.snapshot_dir,
            batch_size=int(env.get("METRICS_INDEX_UPSERT_BATCH_SIZE", "1000")),
            lock_wait_seconds=lock_wait_seconds,
        ),
        "enricher": EnricherResource(
            mode=env.get("METRICS_INDEX_ENRICHER", "auto"), claude=claude_options_from_env(env)
        ),
        "progress": ProgressResource(),
        "feedback": FeedbackResource(home=str(home)),
        PARQUET_IO: ParquetIOManager(base_dir=stores.catalog_dir, lock_wait_seconds=lock_wait_seconds),
        "check_thresholds": CheckThresholds(**_thresholds_from_env(env)),
        "slack": SlackResource(
            webhook_url=EnvVar(SLACK_WEBHOOK_ENV) if env.get(SLACK_WEBHOOK_ENV) else "",
            ui_base_url=env.get("METRICS_INDEX_UI_BASE_URL", "http://localhost:3000"),
        ),
    }


CLAUDE_SETTINGS = {
    "model": "METRICS_INDEX_CLAUDE_MODEL",
    "base_url": "ANTHROPIC_BASE_URL",
    "batch_size": "METRICS_INDEX_LLM_BATCH_SIZE",
    "concurrency": "METRICS_INDEX_LLM_CONCURRENCY",
    "max_requests": "METRICS_INDEX_LLM_MAX_REQUESTS",
    "max_cost_usd": "METRICS_INDEX_LLM_MAX_COST_USD",
    "message_batch_threshold": "METRICS_INDEX_LLM_BATCH_API_THRESHOLD",
}
"""The environment variable of each ClaudeOptions field that can be set from the environment."""


def claude_options_from_env(env: Mapping[str, str]) -> ClaudeOptions:
    """The Claude enricher's options: ClaudeOptions' defaults, with whatever the environment sets laid over them."""
    return ClaudeOptions(**{field: env[variable] for field, variable in CLAUDE_SETTINGS.items() if env.get(variable)})


def _thresholds_from_env(env: Mapping[str, str]) -> dict[str, float]:
    """Thresholds given as METRICS_INDEX_CHECK_<NAME>, e.g. METRICS_INDEX_CHECK_MIN_HELP_SHARE=0.8."""
    variables = {name: f"METRICS_INDEX_CHECK_{name.upper()}" for name in CheckThresholds.model_fields}
    return {name: float(env[variable]) for name, variable in variables.items() if variable in env}


@dataclass(frozen=True)
class PlatformSettings:
    """How the schedule and the sensors behave (read when the definitions load). `automation` off leaves the sensors
    and the schedule stopped until someone starts them in the UI."""

    automation: bool = True
    schedule_cron: str = "0 2 * * *"
    schedule_timezone: str = "UTC"
    namespace_sensor_interval_seconds: int = 300
    max_runs_per_tick: int = 10
    delete_removed_namespaces: bool = False
    alert_sensor_interval_seconds: int = 30


def platform_settings_from_env(env: Mapping[str, str] = os.environ) -> PlatformSettings:
    default = PlatformSettings()
    return PlatformSettings(
        automation=env.get("METRICS_INDEX_AUTOMATION", "on") != "off",
        schedule_cron=env.get("METRICS_INDEX_SCHEDULE_CRON", default.schedule_cron),
        schedule_timezone=env.get("METRICS_INDEX_SCHEDULE_TIMEZONE", default.schedule_timezone),
        namespace_sensor_interval_seconds=int(
            env.get("METRICS_INDEX_SENSOR_INTERVAL_SECONDS", default.namespace_sensor_interval_seconds)
        ),
        max_runs_per_tick=int(env.get("METRICS_INDEX_SENSOR_MAX_RUNS_PER_TICK", default.max_runs_per_tick)),
        delete_removed_namespaces=_flag(env.get("METRICS_INDEX_DELETE_REMOVED_NAMESPACES")),
        alert_sensor_interval_seconds=int(
            env.get("METRICS_INDEX_ALERT_INTERVAL_SECONDS", default.alert_sensor_interval_seconds)
        ),
    )


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}
