"""Resources configured from environment variables; every default is documented in the README."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dagster import ConfigurableResource

from metrics_index.assets import PARQUET_IO
from metrics_index.embeddings import DEFAULT_MODEL
from metrics_index.enrichment.claude import ClaudeOptions
from metrics_index.io import ParquetIOManager
from metrics_index.resources import (
    ChromaResource,
    EnricherResource,
    ProgressResource,
    PrometheusResource,
    RedisResource,
)


def resources_from_env(env: Mapping[str, str] = os.environ) -> dict[str, ConfigurableResource]:
    claude = ClaudeOptions()
    home = Path(env.get("METRICS_INDEX_HOME", ".metrics-index")).absolute()
    return {
        "prometheus": PrometheusResource(
            registry_path=env.get("METRICS_INDEX_REGISTRY", ""),
            url=env.get("METRICS_INDEX_PROMETHEUS_URL", ""),
            timeout_seconds=float(env.get("METRICS_INDEX_PROMETHEUS_TIMEOUT", "10")),
        ),
        "redis": RedisResource(
            url=env.get("METRICS_INDEX_REDIS_URL", ""),
            embedded_path=str(home / "redis.db"),
        ),
        "chroma": ChromaResource(
            path=env.get("METRICS_INDEX_CHROMA_PATH", str(home / "chroma")),
            host=env.get("METRICS_INDEX_CHROMA_HOST", ""),
            port=int(env.get("METRICS_INDEX_CHROMA_PORT", "8000")),
            embedding_model=env.get("METRICS_INDEX_EMBEDDING_MODEL", DEFAULT_MODEL),
            batch_size=int(env.get("METRICS_INDEX_UPSERT_BATCH_SIZE", "1000")),
        ),
        "enricher": EnricherResource(
            mode=env.get("METRICS_INDEX_ENRICHER", "auto"),
            model=env.get("METRICS_INDEX_CLAUDE_MODEL", claude.model),
            base_url=env.get("ANTHROPIC_BASE_URL", ""),
            batch_size=int(env.get("METRICS_INDEX_LLM_BATCH_SIZE", claude.batch_size)),
            concurrency=int(env.get("METRICS_INDEX_LLM_CONCURRENCY", claude.concurrency)),
            max_requests=_optional_int(env.get("METRICS_INDEX_LLM_MAX_REQUESTS")),
            max_cost_usd=_optional_float(env.get("METRICS_INDEX_LLM_MAX_COST_USD")),
        ),
        "progress": ProgressResource(),
        PARQUET_IO: ParquetIOManager(base_dir=str(home / "catalog")),
    }


def _optional_int(value: str | None) -> int | None:
    return int(value) if value else None


def _optional_float(value: str | None) -> float | None:
    return float(value) if value else None
