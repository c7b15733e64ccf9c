"""The figures each asset records as materialization metadata, defined once for the assets that write them and for
the API that reads them back (the CLI summary): a renamed field breaks both sides loudly, never a summary silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Self

from dagster import MetadataValue

LLM_PREFIX = "llm_"
"""Language-model usage is recorded as one number per key (`llm_requests`, `llm_cost_usd`...) so the UI plots each."""


class AssetFigures:
    """Conversion of a dataclass of figures to Dagster metadata and back (mappings are stored as JSON)."""

    def metadata(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        return {name: MetadataValue.json(v) if isinstance(v, Mapping | list) else v for name, v in values.items()}

    @classmethod
    def from_metadata(cls, values: Mapping[str, Any]) -> Self:
        """From the plain values of a materialization's metadata (other keys, such as the IO manager's, ignored)."""
        return cls(**{f.name: values[f.name] for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class LabelCounts(AssetFigures):
    """What the label schemas of a catalog frame hold (sources/labels.py label_stats)."""

    metrics_with_labels: int = 0
    label_names: int = 0
    labels_per_metric_max: int = 0
    labels_complete: int = 0
    labels_count_only: int = 0
    series: int = 0


@dataclass(frozen=True)
class RawFigures(LabelCounts):
    fetched: int
    metrics: int
    with_help: int
    types: dict[str, int]
    duration_seconds: float
    label_requests: int = 0
    label_seconds: float = 0.0
    label_errors: str = ""
    previous_metrics: int = 0
    conflicting_types: dict[str, str] = field(default_factory=dict)
    """Names whose targets declare different types (the first 50), with those types."""
    warning: str = ""
    """Set when the previous output could not be read and was treated as absent."""


@dataclass(frozen=True)
class NameSetFigures(AssetFigures):
    metrics: int
    names: int
    duration_seconds: float
    names_with_labels: int = 0


@dataclass(frozen=True)
class EnrichmentFigures(LabelCounts):
    enricher: str
    metrics: int
    reused: int
    enriched: int
    failed: int
    success_rate: float
    failures: dict[str, str]
    duration_seconds: float
    usage: dict[str, float | str] = field(default_factory=dict)
    awaiting_batch: int = 0
    """Rows holding the rules' answer until the Message Batch they wait on is collected."""
    message_batches: list[str] = field(default_factory=list)
    """The batches those rows wait on (the message batch sensor polls them)."""
    warning: str = ""
    """Set when the previous output could not be read and was treated as absent (every metric enriched again)."""

    def metadata(self) -> dict[str, Any]:
        plain = {k: v for k, v in super().metadata().items() if k != "usage"}
        return {**plain, **{f"{LLM_PREFIX}{key}": value for key, value in self.usage.items()}}

    @classmethod
    def from_metadata(cls, values: Mapping[str, Any]) -> Self:
        usage = {k.removeprefix(LLM_PREFIX): v for k, v in values.items() if k.startswith(LLM_PREFIX)}
        named = {f.name: values[f.name] for f in fields(cls) if f.name != "usage"}
        return cls(**named, usage=usage)


@dataclass(frozen=True)
class IndexFigures(AssetFigures):
    metrics: int
    indexed: int
    unchanged: int
    removed: int
    revision: int
    duration_seconds: float
