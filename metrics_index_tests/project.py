"""A metrics-index set-up for one test: its own registry file, home folder (catalog, Chroma), Redis and Dagster
instance, configured through the same environment variables a user sets, and helpers to run and inspect it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import redis
import yaml
from dagster import DagsterInstance, ExecuteInProcessResult, materialize
from dagster._core.storage.defs_state.base import set_defs_state_storage

from metrics_index.assets import METRIC_ASSETS
from metrics_index.namespaces import NAMESPACE_PARTITIONS
from metrics_index.resources import ChromaResource
from metrics_index.settings import resources_from_env
from metrics_index.stores import revision
from metrics_index.stores.name_set import all_names
from metrics_index.stores.semantic_index import SemanticIndex


def target_entry(metric: str, type_: str = "gauge", help_: str = "", unit: str = "", job: str = "app") -> dict:
    """One entry of a `/api/v1/targets/metadata` answer."""
    return {
        "target": {"instance": f"{job}:9100", "job": job},
        "metric": metric,
        "type": type_,
        "help": help_,
        "unit": unit,
    }


@dataclass
class Project:
    home: Path
    redis_url: str
    instance: DagsterInstance | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def registry_path(self) -> Path:
        return self.home / "namespaces.yaml"

    @property
    def env(self) -> dict[str, str]:
        return {
            "METRICS_INDEX_HOME": str(self.home),
            "METRICS_INDEX_REGISTRY": str(self.registry_path),
            "METRICS_INDEX_REDIS_URL": self.redis_url,
            "METRICS_INDEX_ENRICHER": "rules",
            **self.extra_env,
        }

    def register(self, namespace: str, **entry: Any) -> None:
        """Add or replace one namespace in the registry file (the keys of a registry entry)."""
        document = yaml.safe_load(self.registry_path.read_text()) if self.registry_path.exists() else {}
        document.setdefault("namespaces", {})[namespace] = entry
        self.registry_path.write_text(yaml.safe_dump(document))

    def write_snapshot(self, name: str, entries: list[dict]) -> str:
        """A `/api/v1/targets/metadata` answer saved as a file; returns the name to register as `snapshot`."""
        (self.home / name).write_text(json.dumps({"status": "success", "data": entries}))
        return name

    def materialize(
        self, namespace: str, resources: Mapping[str, Any] | None = None, run_config: dict | None = None
    ) -> ExecuteInProcessResult:
        """Materialize the four assets of one namespace partition, as the job and the CLI do; never raises."""
        assert self.instance is not None, "materialize needs the project's Dagster instance"
        self.instance.add_dynamic_partitions(NAMESPACE_PARTITIONS.name, [namespace])
        # Resolved against this instance's state storage, as api.index_namespace does: an instance another test
        # disposed may still be the current one (seen once in a whole-suite run, in test_service).
        with set_defs_state_storage(self.instance.defs_state_storage):
            return materialize(
                METRIC_ASSETS,
                partition_key=namespace,
                instance=self.instance,
                resources={**resources_from_env(self.env), **(resources or {})},
                run_config=run_config,
                raise_on_error=False,
            )

    def names(self, namespace: str) -> set[str]:
        with redis.Redis.from_url(self.redis_url, decode_responses=True) as client:
            return all_names(client, namespace)

    def revisions(self, *namespaces: str) -> dict[str, int]:
        with redis.Redis.from_url(self.redis_url) as client:
            return revision.read_many(client, namespaces)

    def index(self) -> SemanticIndex:
        chroma: ChromaResource = resources_from_env(self.env)["chroma"]
        return chroma.index()

    def catalog(self, asset: str, namespace: str) -> pd.DataFrame:
        tenant, service = namespace.split(":")
        return pd.read_parquet(self.home / "catalog" / asset / tenant / f"{service}.parquet")


def step_failures(result: ExecuteInProcessResult) -> dict[str, str]:
    """For each failed step, the error message with its causes, as a person reading the run log sees it."""
    failures = {}
    for event in result.all_events:
        if event.is_step_failure:
            error, messages = event.step_failure_data.error, []
            while error is not None:
                messages.append(error.message.strip())
                error = error.cause
            failures[event.step_key] = "\n".join(messages)
    return failures
