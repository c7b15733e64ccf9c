"""The raw metric record every source produces, and the one schema every metadata entry must pass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

RAW_COLUMNS = ("metric_name", "type", "help", "unit")
CONFLICTING_TYPES = "conflicting_types"
"""Extra column of the raw frame: the distinct types declared for a name when its entries disagree, else ''."""
RAW_FRAME_COLUMNS = (*RAW_COLUMNS, CONFLICTING_TYPES)
PROMETHEUS_TYPES = ("counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "unknown")
_ERRORS_QUOTED = 3


class SourceError(RuntimeError):
    """Prometheus (or a snapshot) could not give a usable answer; the message says what and where."""


class MetricDescription(BaseModel):
    """One description of a metric as `/api/v1/metadata` gives it. Strict: a list where a string belongs is refused,
    never stored as its text; null counts as absent."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    type: str = "unknown"
    help: str = ""
    unit: str = ""

    @field_validator("type", "help", "unit", mode="before")
    @classmethod
    def _null_is_absent(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value and value not in PROMETHEUS_TYPES:
            raise ValueError(f"{value[:40]!r} is not a Prometheus metric type ({', '.join(PROMETHEUS_TYPES)})")
        return value or "unknown"


class MetadataEntry(MetricDescription):
    """One entry of `/api/v1/targets/metadata`: a description plus the metric's name and its target's labels."""

    metric: str = Field(min_length=1)
    target: dict[str, str] = Field(default_factory=dict)

    @field_validator("target", mode="before")
    @classmethod
    def _null_target_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


TARGET_ENTRIES = TypeAdapter(list[MetadataEntry])
METRIC_DESCRIPTIONS = TypeAdapter(dict[str, list[MetricDescription]])
METRIC_NAMES = TypeAdapter(list[str], config=ConfigDict(strict=True))


def validated(adapter: TypeAdapter, data: Any, where: str) -> Any:
    """`data` checked against one of the schemas above, or a SourceError naming the first offending entries."""
    try:
        return adapter.validate_python(data)
    except ValidationError as error:
        problems = [_describe(problem, data) for problem in error.errors()[:_ERRORS_QUOTED]]
        more = f" (and {error.error_count() - _ERRORS_QUOTED} more)" if error.error_count() > _ERRORS_QUOTED else ""
        raise SourceError(
            f"{where} gave {error.error_count()} invalid metadata field(s); nothing was stored: "
            + "; ".join(problems)
            + more
        ) from None


def _describe(problem: Mapping[str, Any], data: Any) -> str:
    """`entry 3 (metric 'x'): type: Input should be a valid string, got ['gauge']` from a pydantic error."""
    location = list(problem["loc"])
    subject = "'data'"
    if location and isinstance(data, list) and isinstance(location[0], int):
        index = location.pop(0)
        entry = data[index]
        name = entry.get("metric") if isinstance(entry, dict) else None
        subject = f"entry {index}" + (f" (metric {str(name)[:80]!r})" if isinstance(name, str) else "")
    elif location and isinstance(data, dict):
        subject = f"metric {str(location.pop(0))[:80]!r}"
        if location and isinstance(location[0], int):
            subject += f" entry {location.pop(0)}"
    field = ".".join(str(part) for part in location)
    return f"{subject}: {field + ': ' if field else ''}{problem['msg']}, got {_short(problem.get('input'))}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class RawMetric:
    metric_name: str
    type: str
    help: str
    unit: str

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> list[RawMetric]:
        return [cls(*row) for row in frame[list(RAW_COLUMNS)].itertuples(index=False, name=None)]
