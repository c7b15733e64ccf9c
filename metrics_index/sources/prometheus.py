"""Fetch a namespace's raw metric metadata from the Prometheus HTTP API or from a snapshot file.

A target selector (`{job="x"}`) uses `/api/v1/targets/metadata?match_target=…`, the natural scope of a
service. A series selector uses `/api/v1/label/__name__/values?match[]=…` joined with `/api/v1/metadata`.
Either way the result is one row per metric name, several entries for one name merged deterministically.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from metrics_index.namespaces import DiscoveryRule, NamespaceSource
from metrics_index.sources.base import RAW_COLUMNS, SourceError

# Series that carry no metadata of their own: their family is the name without the suffix.
FAMILY_SUFFIXES = ("_bucket", "_sum", "_count", "_created")
# Series Prometheus itself adds to every scraped target; /api/v1/metadata does not describe them.
SCRAPE_SERIES = {
    "up": {"type": "gauge", "help": "1 if the target's last scrape succeeded, 0 if it failed.", "unit": ""},
    "scrape_duration_seconds": {"type": "gauge", "help": "Duration of the target's last scrape.", "unit": "seconds"},
    "scrape_samples_scraped": {"type": "gauge", "help": "Samples the target exposed in its last scrape.", "unit": ""},
    "scrape_samples_post_metric_relabeling": {
        "type": "gauge",
        "help": "Samples remaining after metric relabeling in the target's last scrape.",
        "unit": "",
    },
    "scrape_series_added": {"type": "gauge", "help": "New series in the target's last scrape.", "unit": ""},
    "scrape_timeout_seconds": {
        "type": "gauge",
        "help": "The configured scrape timeout of the target.",
        "unit": "seconds",
    },
    "scrape_sample_limit": {"type": "gauge", "help": "The configured sample limit of the target.", "unit": ""},
    "scrape_body_size_bytes": {
        "type": "gauge",
        "help": "Uncompressed size of the last scrape response.",
        "unit": "bytes",
    },
}
_MATCHER_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def fetch_raw_metadata(source: NamespaceSource, timeout: float = 10.0) -> pd.DataFrame:
    """The namespace's metrics as a DataFrame with columns metric_name, type, help, unit, sorted by name."""
    if source.snapshot is not None:
        return merge_entries(read_snapshot(source.snapshot, source.selector))
    if not source.prometheus_url:
        raise SourceError(f"namespace {source.namespace} has no snapshot and no Prometheus URL is configured")
    api = PrometheusApi(source.prometheus_url, timeout)
    api.check_health()
    if source.selector_kind == "series":
        return merge_entries(api.series_metadata(source.selector))
    return merge_entries(api.targets_metadata(source.selector))


def discover_namespaces(rule: DiscoveryRule, timeout: float = 10.0) -> dict[str, set[str]]:
    """`tenant:service` → metric names, from the targets that carry both labels (one targets-metadata request)."""
    if not rule.prometheus_url:
        raise SourceError(
            "the registry's 'discover' rule has no prometheus_url and METRICS_INDEX_PROMETHEUS_URL is unset"
        )
    api = PrometheusApi(rule.prometheus_url, timeout)
    api.check_health()
    tenant, service = rule.tenant_label, rule.service_label
    found: dict[str, set[str]] = {}
    for entry in api.targets_metadata(f'{{{tenant}=~".+",{service}=~".+"}}'):
        labels = entry.get("target") or {}
        found.setdefault(f"{labels.get(tenant)}:{labels.get(service)}", set()).add(str(entry.get("metric")))
    return found


class PrometheusApi:
    """The few Prometheus HTTP API calls metrics-index needs, each validated before use."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def check_health(self) -> None:
        """Fail fast, before anything downstream is touched, when Prometheus is down."""
        try:
            response = self.session.get(f"{self.base_url}/-/healthy", timeout=min(self.timeout, 5.0))
        except requests.RequestException as error:
            raise SourceError(f"Prometheus at {self.base_url} is unreachable: {_reason(error)}") from None
        if response.status_code != 200:
            raise SourceError(
                f"Prometheus at {self.base_url} is not healthy: /-/healthy answered HTTP {response.status_code}"
            )

    def targets_metadata(self, selector: str) -> list[dict[str, Any]]:
        data = self._get("/api/v1/targets/metadata", {"match_target": selector})
        _expect(isinstance(data, list), self.base_url, "/api/v1/targets/metadata", "'data' is not a list")
        return data

    def series_metadata(self, selector: str) -> list[dict[str, Any]]:
        names = self._get("/api/v1/label/__name__/values", {"match[]": selector})
        _expect(isinstance(names, list), self.base_url, "/api/v1/label/__name__/values", "'data' is not a list")
        metadata = self._get("/api/v1/metadata", {})
        _expect(isinstance(metadata, dict), self.base_url, "/api/v1/metadata", "'data' is not an object")
        return join_series_to_metadata(names, metadata)

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        url = f"{self.base_url}{path}"
        try:
            response = self.session.get(url, params=params, timeout=self.timeout)
        except requests.RequestException as error:
            raise SourceError(f"Prometheus at {self.base_url} is unreachable: {_reason(error)}") from None
        if response.status_code != 200:
            raise SourceError(
                f"Prometheus {path} at {self.base_url} answered HTTP {response.status_code}: {_excerpt(response.text)}"
            )
        try:
            body = response.json()
        except ValueError:
            raise SourceError(
                f"Prometheus {path} at {self.base_url} did not answer JSON: {_excerpt(response.text)}"
            ) from None
        return unwrap_api_body(body, self.base_url, path)


def unwrap_api_body(body: Any, where: str, path: str) -> Any:
    """The `data` of a `{"status": "success", "data": …}` answer, or a SourceError saying what is wrong."""
    _expect(isinstance(body, dict), where, path, "the body is not a JSON object")
    if body.get("status") != "success":
        detail = body.get("error") or f"status is {body.get('status')!r}"
        raise SourceError(f"Prometheus {path} at {where} reported an error: {detail}")
    _expect("data" in body, where, path, "the body has no 'data'")
    return body["data"]


def read_snapshot(path: Path, selector: str) -> list[dict[str, Any]]:
    """Entries from a saved `/api/v1/targets/metadata` (filtered by the selector's target labels)
    or `/api/v1/metadata` response (taken whole: it has no targets to filter on)."""
    try:
        body = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SourceError(f"snapshot {path} does not exist") from None
    except ValueError as error:
        raise SourceError(f"snapshot {path} is not JSON: {error}") from None
    data = unwrap_api_body(body, str(path), "snapshot")
    if isinstance(data, dict):
        return [{**entry, "metric": name} for name, entries in data.items() for entry in entries]
    _expect(isinstance(data, list), str(path), "snapshot", "'data' is neither a list nor an object")
    matchers = parse_selector(selector)
    return [entry for entry in data if labels_match(entry.get("target") or {}, matchers)]


def join_series_to_metadata(names: Iterable[str], metadata: Mapping[str, list[dict]]) -> list[dict[str, Any]]:
    """One entry per metric family: `x_bucket`, `x_sum`, `x_count` fold into `x` when `x` has metadata;
    a name with no metadata at all is kept with type 'unknown'."""
    entries: dict[str, list[dict]] = {}
    for name in names:
        family = metric_family(name, metadata)
        described = metadata.get(family) or [SCRAPE_SERIES.get(family, {"type": "unknown", "help": "", "unit": ""})]
        entries.setdefault(family, [{**entry, "metric": family} for entry in described])
    return [entry for family in sorted(entries) for entry in entries[family]]


def metric_family(name: str, metadata: Mapping[str, Any]) -> str:
    if name in metadata:
        return name
    for suffix in FAMILY_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in metadata:
            return name[: -len(suffix)]
    return name


def merge_entries(entries: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per metric name. Several targets may describe one name differently: take the most common
    declared type, help and unit (ties: the longer help, then alphabetical), so reruns agree."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for entry in entries:
        name = entry.get("metric")
        if not isinstance(name, str) or not name:
            raise SourceError(f"a metadata entry has no metric name: {_excerpt(json.dumps(entry, default=str))}")
        grouped.setdefault(name, []).append(entry)
    rows = [
        (
            name,
            _most_common((e.get("type") or "" for e in group), ignore=("", "unknown")) or "unknown",
            _most_common(e.get("help") or "" for e in group),
            _most_common(e.get("unit") or "" for e in group),
        )
        for name, group in sorted(grouped.items())
    ]
    return pd.DataFrame(rows, columns=list(RAW_COLUMNS))


def _most_common(values: Iterable[str], ignore: tuple[str, ...] = ("",)) -> str:
    counts = Counter(str(v) for v in values if v not in ignore)
    if not counts:
        return ""
    return min(counts, key=lambda v: (-counts[v], -len(v), v))


def parse_selector(selector: str) -> list[tuple[str, str, str]]:
    """`{job="x", env=~"prod.*"}` → [(label, op, value)]; a clear error for anything else."""
    text = selector.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise SourceError(f'selector {selector!r} must look like {{label="value", ...}}')
    body, matchers, position = text[1:-1].strip(), [], 0
    while position < len(body):
        match = _MATCHER_RE.match(body, position)
        if not match:
            raise SourceError(f"selector {selector!r} cannot be parsed near {body[position:]!r}")
        label, op, value = match.groups()
        matchers.append((label, op, _unescape(value)))
        position = match.end()
    return matchers


def _unescape(value: str) -> str:
    """A PromQL double-quoted string's escapes (`\\"`, `\\\\`, `\\n`, `\\t`), leaving other text as it is."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), value)


def labels_match(labels: Mapping[str, str], matchers: Iterable[tuple[str, str, str]]) -> bool:
    for label, op, value in matchers:
        actual = labels.get(label, "")
        ok = {
            "=": actual == value,
            "!=": actual != value,
            "=~": re.fullmatch(value, actual) is not None,
            "!~": re.fullmatch(value, actual) is None,
        }[op]
        if not ok:
            return False
    return True


def _expect(condition: bool, where: str, path: str, problem: str) -> None:
    if not condition:
        raise SourceError(f"Prometheus {path} at {where} gave an unexpected answer: {problem}")


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _reason(error: requests.RequestException) -> str:
    return f"{type(error).__name__}: {_excerpt(str(error), 160)}"


def select_metrics(frame: pd.DataFrame, limit: int | None = None, exclude: str | None = None) -> pd.DataFrame:
    """Drop names matching the `exclude` regular expression, then keep the first `limit` by name."""
    if exclude:
        pattern = re.compile(exclude)
        frame = frame[[pattern.search(name) is None for name in frame["metric_name"]]]
    if limit is not None:
        frame = frame.head(limit)
    return frame.reset_index(drop=True)
