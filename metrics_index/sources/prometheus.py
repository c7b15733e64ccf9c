"""Fetch a namespace's raw metric metadata from the Prometheus HTTP API or from a snapshot file.

A target selector (`{job="x"}`) uses `/api/v1/targets/metadata?match_target=…`, the natural scope of a
service. A series selector uses `/api/v1/label/__name__/values?match[]=…` joined with `/api/v1/metadata`.
Either way the result is one row per metric name, several entries for one name merged deterministically.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pandas as pd
import requests

from metrics_index.namespaces import DiscoveryRule, NamespaceSource
from metrics_index.scrape_series import SCRAPE_SERIES_FIELDS
from metrics_index.sources.base import (
    METRIC_DESCRIPTIONS,
    METRIC_NAMES,
    RAW_FRAME_COLUMNS,
    TARGET_ENTRIES,
    MetadataEntry,
    MetricDescription,
    SourceError,
    validated,
)

# Series that carry no metadata of their own: their family is the name without the suffix.
FAMILY_SUFFIXES = ("_bucket", "_sum", "_count", "_created")
# Series Prometheus itself adds to every scraped target; /api/v1/metadata does not describe them.
SCRAPE_SERIES = {
    name: MetricDescription(type=kind, help=text, unit=unit)
    for name, (kind, text, unit) in SCRAPE_SERIES_FIELDS.items()
}
UNDESCRIBED = MetricDescription()
_MATCHER_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_MAX_REDIRECTS = 5
_CHUNK_BYTES = 64 * 1024
_HEALTH_TIMEOUT = 5.0


@dataclass(frozen=True)
class RequestLimits:
    """How far one Prometheus request is trusted. The timeout bounds the whole exchange (connecting, redirects,
    headers and body), not one read, so a server that trickles a byte a second cannot hold a run; the size cap
    bounds the decoded body; a redirect to another host is refused unless allowed, so a namespace can never be
    filled with another server's metrics unnoticed."""

    timeout_seconds: float = 10.0
    max_bytes: int = 64 * 2**20
    redirects_to_other_hosts: bool = False


def fetch_raw_metadata(source: NamespaceSource, limits: RequestLimits = RequestLimits()) -> pd.DataFrame:
    """The namespace's metrics as a DataFrame with columns metric_name, type, help, unit (and conflicting_types),
    sorted by name."""
    if source.snapshot is not None:
        return merge_entries(read_snapshot(source.snapshot, source.selector), f"snapshot {source.snapshot}")
    if not source.prometheus_url:
        raise SourceError(f"namespace {source.namespace} has no snapshot and no Prometheus URL is configured")
    api = PrometheusApi(source.prometheus_url, limits)
    api.check_health()
    if source.selector_kind == "series":
        return merge_entries(api.series_metadata(source.selector))
    return merge_entries(api.targets_metadata(source.selector))


def discover_namespaces(rule: DiscoveryRule, limits: RequestLimits = RequestLimits()) -> dict[str, set[str]]:
    """`tenant:service` → metric names, from the targets that carry both labels (one targets-metadata request)."""
    if not rule.prometheus_url:
        raise SourceError(
            "the registry's 'discover' rule has no prometheus_url and METRICS_INDEX_PROMETHEUS_URL is unset"
        )
    api = PrometheusApi(rule.prometheus_url, limits)
    api.check_health()
    tenant, service = rule.tenant_label, rule.service_label
    found: dict[str, set[str]] = {}
    for entry in api.targets_metadata(f'{{{tenant}=~".+",{service}=~".+"}}'):
        found.setdefault(f"{entry.target.get(tenant)}:{entry.target.get(service)}", set()).add(entry.metric)
    return found


class AnswerTooLarge(SourceError):
    """An answer over the size cap: an error for metadata, a cut answer for label reads."""


class PrometheusApi:
    """The few Prometheus HTTP API calls metrics-index needs, each bounded and validated before use."""

    def __init__(self, base_url: str, limits: RequestLimits = RequestLimits()) -> None:
        self.base_url = base_url.rstrip("/")
        self.limits = limits
        self.session = requests.Session()

    def check_health(self) -> None:
        """Fail fast, before anything downstream is touched, when Prometheus is down."""
        status, _body = self.request("/-/healthy", {}, timeout=min(self.limits.timeout_seconds, _HEALTH_TIMEOUT))
        if status != 200:
            raise SourceError(f"Prometheus at {self.base_url} is not healthy: /-/healthy answered HTTP {status}")

    def targets_metadata(self, selector: str) -> list[MetadataEntry]:
        path = "/api/v1/targets/metadata"
        data = self._get(path, {"match_target": selector})
        _expect(isinstance(data, list), self.base_url, path, "'data' is not a list")
        return validated(TARGET_ENTRIES, data, f"Prometheus {path} at {self.base_url}")

    def series_metadata(self, selector: str) -> list[MetadataEntry]:
        names_path, metadata_path = "/api/v1/label/__name__/values", "/api/v1/metadata"
        names = self._get(names_path, {"match[]": selector})
        _expect(isinstance(names, list), self.base_url, names_path, "'data' is not a list")
        names = validated(METRIC_NAMES, names, f"Prometheus {names_path} at {self.base_url}")
        metadata = self._get(metadata_path, {})
        _expect(isinstance(metadata, dict), self.base_url, metadata_path, "'data' is not an object")
        metadata = validated(METRIC_DESCRIPTIONS, metadata, f"Prometheus {metadata_path} at {self.base_url}")
        return join_series_to_metadata(names, metadata)

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        status, body = self.request(path, params)
        text = body.decode("utf-8", errors="replace")
        if status != 200:
            raise SourceError(f"Prometheus {path} at {self.base_url} answered HTTP {status}: {_excerpt(text)}")
        try:
            answer = json.loads(body)
        except ValueError:
            raise SourceError(f"Prometheus {path} at {self.base_url} did not answer JSON: {_excerpt(text)}") from None
        return unwrap_api_body(answer, self.base_url, path)

    def request(
        self, path: str, params: Mapping[str, str], timeout: float | None = None, max_bytes: int | None = None
    ) -> tuple[int, bytes]:
        """Status and body of one GET, all of it within `timeout` seconds (the limits' by default) and at most
        `max_bytes` (the limits' cap by default; more raises AnswerTooLarge). The exchange runs in a daemon thread
        so that even a server trickling its headers cannot hold the caller past the deadline."""
        timeout = self.limits.timeout_seconds if timeout is None else timeout
        cap = self.limits.max_bytes if max_bytes is None else max_bytes
        outcome: list[tuple[int, bytes] | BaseException] = []

        def exchange() -> None:
            try:
                outcome.append(self._exchange(path, params, time.monotonic() + timeout, cap))
            except BaseException as error:  # handed to the caller's thread
                outcome.append(error)

        worker = threading.Thread(target=exchange, name=f"prometheus {path}", daemon=True)
        worker.start()
        worker.join(timeout)
        if not outcome:
            raise SourceError(self._deadline_message(path, timeout))
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def _exchange(self, path: str, params: Mapping[str, str] | None, deadline: float, cap: int) -> tuple[int, bytes]:
        url = f"{self.base_url}{path}"
        for _hop in range(_MAX_REDIRECTS + 1):
            remaining = max(deadline - time.monotonic(), 0.001)
            try:
                response = self.session.get(url, params=params, timeout=remaining, stream=True, allow_redirects=False)
            except requests.RequestException as error:
                raise SourceError(f"Prometheus at {self.base_url} is unreachable: {_reason(error)}") from None
            with response:
                if not response.is_redirect:
                    return response.status_code, self._read_body(response, path, deadline, cap)
                target = urljoin(response.url, response.headers["location"])
            if _origin(target) != _origin(url) and not self.limits.redirects_to_other_hosts:
                raise SourceError(
                    f"Prometheus {path} at {self.base_url} redirected to another host ({_excerpt(target, 120)}); "
                    "refused, so that no other server's metrics land in this namespace "
                    "(allow with METRICS_INDEX_PROMETHEUS_REDIRECTS_TO_OTHER_HOSTS=1)"
                )
            url, params = target, None
        raise SourceError(f"Prometheus {path} at {self.base_url} redirected more than {_MAX_REDIRECTS} times")

    def _read_body(self, response: requests.Response, path: str, deadline: float, cap: int) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise AnswerTooLarge(self._size_message(path, f"announces {int(declared):,} bytes", cap))
        chunks, size = [], 0
        try:
            while chunk := response.raw.read1(_CHUNK_BYTES, decode_content=True):
                size += len(chunk)
                if size > cap:
                    raise AnswerTooLarge(
                        self._size_message(path, f"is larger than that (more than {size:,} bytes read)", cap)
                    )
                if time.monotonic() > deadline:
                    raise SourceError(self._deadline_message(path, self.limits.timeout_seconds))
                chunks.append(chunk)
        except (requests.RequestException, OSError) as error:
            raise SourceError(f"Prometheus {path} at {self.base_url} broke off its answer: {error}") from None
        except Exception as error:  # urllib3's own errors (timeouts, protocol errors) while reading the body
            if isinstance(error, SourceError):
                raise
            raise SourceError(
                f"Prometheus {path} at {self.base_url} broke off its answer: {type(error).__name__}: {error}"
            ) from None
        return b"".join(chunks)

    def _deadline_message(self, path: str, timeout: float) -> str:
        return (
            f"Prometheus {path} at {self.base_url} did not give a whole answer within {timeout:g} s "
            "(a deadline for the whole request, not one read); raise METRICS_INDEX_PROMETHEUS_TIMEOUT if it is "
            "only slow"
        )

    def _size_message(self, path: str, what: str, cap: int) -> str:
        return (
            f"Prometheus {path} at {self.base_url}: the answer {what}; the limit is {cap:,} bytes "
            "(METRICS_INDEX_PROMETHEUS_MAX_BYTES)"
        )


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default_port


def unwrap_api_body(body: Any, where: str, path: str) -> Any:
    """The `data` of a `{"status": "success", "data": …}` answer, or a SourceError saying what is wrong."""
    _expect(isinstance(body, dict), where, path, "the body is not a JSON object")
    if body.get("status") != "success":
        detail = body.get("error") or f"status is {body.get('status')!r}"
        raise SourceError(f"Prometheus {path} at {where} reported an error: {_excerpt(str(detail))}")
    _expect("data" in body, where, path, "the body has no 'data'")
    return body["data"]


def read_snapshot(path: Path, selector: str) -> list[MetadataEntry]:
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
        described = validated(METRIC_DESCRIPTIONS, data, f"snapshot {path}")
        return [_entry(name, description) for name, descriptions in described.items() for description in descriptions]
    _expect(isinstance(data, list), str(path), "snapshot", "'data' is neither a list nor an object")
    matchers = parse_selector(selector)
    return [
        entry for entry in validated(TARGET_ENTRIES, data, f"snapshot {path}") if labels_match(entry.target, matchers)
    ]


def _entry(name: str, description: MetricDescription) -> MetadataEntry:
    return MetadataEntry(metric=name, type=description.type, help=description.help, unit=description.unit)


def join_series_to_metadata(
    names: Iterable[str], metadata: Mapping[str, list[MetricDescription]]
) -> list[MetadataEntry]:
    """One entry per metric family: `x_bucket`, `x_sum`, `x_count` fold into `x` when `x` has metadata;
    a name with no metadata at all is kept with type 'unknown'."""
    entries: dict[str, list[MetadataEntry]] = {}
    for name in names:
        family = metric_family(name, metadata)
        described = metadata.get(family) or [SCRAPE_SERIES.get(family, UNDESCRIBED)]
        entries.setdefault(family, [_entry(family, description) for description in described])
    return [entry for family in sorted(entries) for entry in entries[family]]


def metric_family(name: str, metadata: Mapping[str, Any]) -> str:
    if name in metadata:
        return name
    for suffix in FAMILY_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in metadata:
            return name[: -len(suffix)]
    return name


def merge_entries(entries: Iterable[MetadataEntry | Mapping[str, Any]], where: str = "metadata") -> pd.DataFrame:
    """One row per metric name, every entry validated first. Several targets may describe one name differently:
    take the most common declared type, help and unit (ties: the longer help, then alphabetical), so reruns agree;
    when the declared types disagree, `conflicting_types` lists them for the metadata and the asset check."""
    grouped: dict[str, list[MetadataEntry]] = {}
    for entry in validated(TARGET_ENTRIES, list(entries), where):
        grouped.setdefault(entry.metric, []).append(entry)
    rows = []
    for name, group in sorted(grouped.items()):
        declared = sorted({e.type for e in group} - {"unknown"})
        rows.append(
            (
                name,
                _most_common((e.type for e in group), ignore=("", "unknown")) or "unknown",
                _most_common(e.help for e in group),
                _most_common(e.unit for e in group),
                ",".join(declared) if len(declared) > 1 else "",
            )
        )
    return pd.DataFrame(rows, columns=list(RAW_FRAME_COLUMNS))


def _most_common(values: Iterable[str], ignore: tuple[str, ...] = ("",)) -> str:
    counts = Counter(v for v in values if v not in ignore)
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


def shrink_problem(namespace: str, previous: int, current: int, max_share: float) -> str | None:
    """Why a namespace that had `previous` metrics may not drop to `current` in one run, or None when it may."""
    if not previous or (previous - current) / previous <= max_share:
        return None
    return (
        f"{namespace} would shrink from {previous} to {current} metrics ({(previous - current) / previous:.0%} lost, "
        f"more than the {max_share:.0%} allowed): more often a broken answer than a real change. Nothing "
        "downstream was changed; set allow_shrink (or --allow-shrink) to accept it, or raise "
        "METRICS_INDEX_MAX_SHRINK_SHARE."
    )
