"""Label schemas: for each metric, its label names and, per label, the count of distinct values with a bounded sample.

Read from the series of the namespace: one `/api/v1/series?match[]=<selector>` request over a recent window, with a
`limit` (honoured by Prometheus 2.49 and later) and a cap on the bytes read (older servers ignore `limit`). When that
answer is cut short, each metric is read on its own (`match[]={__name__=~"x|x_bucket|…", <selector>}`) until the time
budget runs out; metrics left over keep what the cut answer showed, marked incomplete. A snapshot namespace reads a
saved `/api/v1/series` answer instead.

A label with few values keeps them all (`complete`: a query's `label="value"` can be checked against them); one with
more keeps a sample; one with very many (ids, paths) or an id-like name keeps only its count.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from metrics_index.sources.base import SourceError
from metrics_index.sources.prometheus import (
    AnswerTooLarge,
    PrometheusApi,
    labels_match,
    parse_selector,
    unwrap_api_body,
)
from metrics_index.stores.name_set import OPENMETRICS_SAMPLE_SUFFIXES, SERIES_SUFFIXES

MAX_VALUES = 25  # a label with at most this many distinct values keeps them all
SAMPLE_VALUES = 10  # a label with more keeps this many (the most frequent)...
HIGH_CARDINALITY = 200  # ...unless it has more than this many, or an id-like name: then only its count
NAMESPACE_SERIES_LIMIT = 50_000  # series read in the one namespace-wide request
METRIC_SERIES_LIMIT = 10_000  # series read per metric when the namespace-wide answer was cut
MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # Prometheus before 2.49 ignores `limit`: never read more than this
WINDOW_SECONDS = 900  # series seen in the last 15 minutes
DEFAULT_BUDGET_SECONDS = 30.0
STRUCTURAL_LABELS = {"le": "histogram", "quantile": "summary"}  # on one series of a family only
_ID_LIKE = re.compile(r"(^|_)(id|uid|uuid|guid|path|url|uri|trace|span|session|request)s?$", re.IGNORECASE)
_SERIES_PATH = "/api/v1/series"


@dataclass(frozen=True)
class LabelSummary:
    """One label of one metric: how many distinct values it has and which (all of them when `complete`)."""

    count: int
    values: tuple[str, ...] = ()
    complete: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "values": list(self.values), "complete": self.complete}


@dataclass(frozen=True)
class LabelSchema:
    """A metric's labels. `series` and `targets` count the series and the (job, instance) pairs seen; `partial` says
    the series read was cut short, so counts are lower bounds and no label is complete; `names` are the series names
    seen (`x_bucket`, `x_total`, ...)."""

    labels: dict[str, LabelSummary]
    series: int = 0
    targets: int = 0
    partial: bool = False
    names: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "series": self.series,
                "targets": self.targets,
                "partial": self.partial,
                "names": list(self.names),
                "labels": {name: summary.as_dict() for name, summary in sorted(self.labels.items())},
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | None) -> LabelSchema | None:
        if not text or not isinstance(text, str):
            return None
        body = json.loads(text)
        labels = {
            name: LabelSummary(item["count"], tuple(item["values"]), item["complete"])
            for name, item in body["labels"].items()
        }
        return cls(labels, body["series"], body["targets"], body["partial"], tuple(body.get("names", ())))

    def without(self, label: str) -> LabelSchema:
        return LabelSchema(
            {k: v for k, v in self.labels.items() if k != label}, self.series, self.targets, self.partial, self.names
        )


@dataclass
class LabelFetch:
    """What a label read found and what it cost."""

    schemas: dict[str, LabelSchema]
    requests: int = 0
    seconds: float = 0.0
    series: int = 0
    cut: bool = False
    errors: list[str] = field(default_factory=list)


def summarize(series: Iterable[Mapping[str, str]], partial: bool = False) -> LabelSchema:
    """The label schema of a group of series (their `__name__` counted among `names`, not as a label)."""
    counts: dict[str, dict[str, int]] = {}
    targets: set[tuple[str, str]] = set()
    names: set[str] = set()
    total = 0
    for labels in series:
        total += 1
        targets.add((labels.get("job", ""), labels.get("instance", "")))
        for name, value in labels.items():
            if name == "__name__":
                names.add(value)
            else:
                values = counts.setdefault(name, {})
                values[value] = values.get(value, 0) + 1
    summaries = {name: _summary(name, values, partial) for name, values in counts.items()}
    return LabelSchema(summaries, total, len(targets), partial, tuple(sorted(names)))


def _summary(name: str, values: Mapping[str, int], partial: bool) -> LabelSummary:
    count = len(values)
    if count <= MAX_VALUES:
        return LabelSummary(count, tuple(sorted(values)), complete=not partial)
    if count > HIGH_CARDINALITY or _ID_LIKE.search(name):
        return LabelSummary(count)
    frequent = sorted(values, key=lambda v: (-values[v], v))[:SAMPLE_VALUES]
    return LabelSummary(count, tuple(sorted(frequent)))


def family_names(raw: pd.DataFrame) -> dict[str, str]:
    """Series name → metric family, for every series name a family may expose (`x`, `x_bucket`, `x_sum`, …, and
    OpenMetrics' `x_total` of a counter family `x`)."""
    mapping: dict[str, str] = {}
    for name, metric_type in zip(raw["metric_name"], raw["type"], strict=True):
        mapping[name] = name
        sample = OPENMETRICS_SAMPLE_SUFFIXES.get(metric_type, "")  # "" maps the name to itself, as above
        for suffix in (*SERIES_SUFFIXES.get(metric_type, ()), sample, "_created"):
            mapping.setdefault(name + suffix, name)
    return mapping


def family_schemas(
    raw: pd.DataFrame, series: Iterable[Mapping[str, str]], partial: bool = False
) -> dict[str, LabelSchema]:
    """One schema per metric family of `raw`, from the series of the family; series of other names are ignored."""
    families = family_names(raw)
    grouped: dict[str, list[Mapping[str, str]]] = {}
    for labels in series:
        family = families.get(labels.get("__name__", ""))
        if family is not None:
            grouped.setdefault(family, []).append(labels)
    return {family: summarize(group, partial) for family, group in grouped.items()}


def series_name_schemas(raw: pd.DataFrame) -> dict[str, LabelSchema]:
    """The schema of every name a query may use, from the families' schemas in `raw["labels"]`: `le` belongs to a
    histogram's `_bucket` series only and `quantile` to a summary's own series only (not to `_sum`, `_count`)."""
    schemas: dict[str, LabelSchema] = {}
    for name, metric_type, text in zip(raw["metric_name"], raw["type"], raw.get("labels", ()), strict=False):
        schema = LabelSchema.from_json(text)
        if schema is None:
            continue
        if metric_type in ("histogram", "gaugehistogram"):
            schemas[name] = schema.without("le")
            schemas[f"{name}_bucket"] = schema
            for suffix in SERIES_SUFFIXES[metric_type][1:]:
                schemas[name + suffix] = schema.without("le")
        elif metric_type == "summary":
            schemas[name] = schema
            for suffix in SERIES_SUFFIXES["summary"]:
                schemas[name + suffix] = schema.without("quantile")
        else:
            schemas[name] = schema
    return schemas


def with_labels(raw: pd.DataFrame, schemas: Mapping[str, LabelSchema]) -> pd.DataFrame:
    """`raw` with a `labels` column (each metric's schema as JSON, or None when no series of it was seen), and each
    metric named as its series are: a counter family `x` that an exporter served in OpenMetrics is queried as
    `x_total` (an info family as `x_info`), which Prometheus's metadata does not say but the series do."""
    texts = [schemas[name].to_json() if name in schemas else None for name in raw["metric_name"]]
    taken = set(raw["metric_name"])
    names = [
        queried_name(name, metric_type, schemas.get(name), taken)
        for name, metric_type in zip(raw["metric_name"], raw["type"], strict=True)
    ]
    return raw.assign(
        metric_name=pd.Series(names, index=raw.index, dtype=object),
        labels=pd.Series(texts, index=raw.index, dtype=object),
    )


def queried_name(name: str, metric_type: str, schema: LabelSchema | None, taken: set[str]) -> str:
    """The family's name as a query uses it: `x_total` (`x_info`) when its series carry only that name."""
    suffix = OPENMETRICS_SAMPLE_SUFFIXES.get(metric_type, "")
    if not suffix or schema is None or name.endswith(suffix) or name in schema.names:
        return name
    sample = name + suffix
    return sample if sample in schema.names and sample not in taken else name


def seen_series_names(raw: pd.DataFrame) -> set[str]:
    """The series names the families of `raw` showed (LabelSchema.names), none when its labels are unknown."""
    texts = raw.get("labels", ())
    return {name for schema in map(LabelSchema.from_json, texts) if schema is not None for name in schema.names}


def name_set_labels(raw: pd.DataFrame) -> dict[str, str]:
    """What the name set's label hash holds for `raw`: each name a query may use → its label schema as JSON."""
    return {name: schema.to_json() for name, schema in series_name_schemas(raw).items()}


def label_stats(frame: pd.DataFrame) -> dict[str, int]:
    """Label counts for an asset's metadata."""
    schemas = [s for s in map(LabelSchema.from_json, frame.get("labels", pd.Series(dtype=object))) if s is not None]
    names = {label for schema in schemas for label in schema.labels}
    return {
        "metrics_with_labels": len(schemas),
        "label_names": len(names),
        "labels_per_metric_max": max((len(s.labels) for s in schemas), default=0),
        "labels_complete": sum(summary.complete for s in schemas for summary in s.labels.values()),
        "labels_count_only": sum(not summary.values for s in schemas for summary in s.labels.values()),
        "series": sum(s.series for s in schemas),
    }


def read_series_snapshot(path: Path, selector: str) -> list[dict[str, str]]:
    """The series of a saved `/api/v1/series` answer (JSON, or gzip-compressed JSON) that match the selector."""
    try:
        raw_bytes = Path(path).read_bytes()
        body = json.loads(gzip.decompress(raw_bytes) if raw_bytes[:2] == b"\x1f\x8b" else raw_bytes)
    except FileNotFoundError:
        raise SourceError(f"series snapshot {path} does not exist") from None
    except (ValueError, OSError) as error:
        raise SourceError(f"series snapshot {path} is not JSON: {error}") from None
    data = unwrap_api_body(body, str(path), "series snapshot")
    if not isinstance(data, list) or not all(isinstance(s, dict) for s in data):
        raise SourceError(f"series snapshot {path}: 'data' is not a list of label sets")
    matchers = parse_selector(selector)
    return [labels for labels in data if labels_match(labels, matchers)]


def fetch_label_schemas(
    api: PrometheusApi,
    selector: str,
    raw: pd.DataFrame,
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    namespace_limit: int = NAMESPACE_SERIES_LIMIT,
    metric_limit: int = METRIC_SERIES_LIMIT,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> LabelFetch:
    """Label schemas of the metrics of `raw` from a live Prometheus, within `budget_seconds` of requests."""
    started = time.monotonic()
    deadline = started + budget_seconds
    end = time.time()
    window = {"start": f"{end - WINDOW_SECONDS:.3f}", "end": f"{end:.3f}"}
    fetch = LabelFetch(schemas={})
    series, cut = _series(api, selector, window, namespace_limit, max_bytes, fetch)
    fetch.series = len(series)
    fetch.schemas = family_schemas(raw, series, partial=cut)
    fetch.cut = cut
    if cut:
        families = family_names(raw)
        members: dict[str, list[str]] = {}
        for series_name, family in families.items():
            members.setdefault(family, []).append(series_name)
        for family in raw["metric_name"]:
            if time.monotonic() >= deadline:
                fetch.errors.append(f"time budget of {budget_seconds:g} s spent: some label schemas are partial")
                break
            matcher = _with_name_matcher(selector, members[family])
            one, one_cut = _series(api, matcher, window, metric_limit, max_bytes, fetch)
            if one:
                fetch.schemas[family] = summarize(one, partial=one_cut)
    fetch.seconds = round(time.monotonic() - started, 3)
    return fetch


def _with_name_matcher(selector: str, names: Iterable[str]) -> str:
    body = selector.strip()[1:-1].strip()
    names_re = "|".join(sorted(names))
    return "{" + f'__name__=~"{names_re}"' + (f", {body}" if body else "") + "}"


def _series(
    api: PrometheusApi, match: str, window: Mapping[str, str], limit: int, max_bytes: int, fetch: LabelFetch
) -> tuple[list[dict[str, str]], bool]:
    """The series matching `match` (at most `limit`) and whether the answer was cut by the limit or the byte cap."""
    params = {"match[]": match, "limit": str(limit), **window}
    fetch.requests += 1
    try:
        status, raw_body = api.request(_SERIES_PATH, params, max_bytes=max_bytes)
    except AnswerTooLarge:
        return [], True
    if status != 200:
        raise SourceError(
            f"Prometheus {_SERIES_PATH} at {api.base_url} answered HTTP {status}: "
            f"{raw_body[:200].decode('utf-8', errors='replace')}"
        )
    try:
        body = json.loads(raw_body)
    except ValueError:
        raise SourceError(f"Prometheus {_SERIES_PATH} at {api.base_url} did not answer JSON") from None
    data = unwrap_api_body(body, api.base_url, _SERIES_PATH)
    if not isinstance(data, list):
        raise SourceError(
            f"Prometheus {_SERIES_PATH} at {api.base_url} gave an unexpected answer: 'data' is not a list"
        )
    truncated = len(data) >= limit or any("truncated" in str(w) for w in body.get("warnings") or ())
    return data[:limit], truncated
