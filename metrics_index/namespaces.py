"""Namespaces (`tenant:service`) and the registry file that says where each one's metrics come from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_PART = r"[a-z0-9][a-z0-9_.-]*"
_NAMESPACE_RE = re.compile(rf"({_PART}):({_PART})")
NAMESPACE_RULE = (
    "a namespace is 'tenant:service': two non-empty parts separated by one ':', each made of "
    "lower-case letters, digits, '_', '.' and '-', starting with a letter or digit "
    "(e.g. 'production:order-service')"
)
SELECTOR_KINDS = ("target", "series")
DEFAULT_REGISTRY_PATH = Path(__file__).parent / "data" / "namespaces.yaml"


def __getattr__(name: str) -> Any:
    """`NAMESPACE_PARTITIONS`, the dynamic partitions of every asset, made on first use: the CLI's search and
    validate and the search service parse namespaces here without loading Dagster."""
    if name == "NAMESPACE_PARTITIONS":
        from dagster import DynamicPartitionsDefinition

        globals()[name] = DynamicPartitionsDefinition(name="namespace")
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class NamespaceError(ValueError):
    """A namespace string or registry entry that breaks the documented rules."""


@dataclass(frozen=True, order=True)
class Namespace:
    tenant: str
    service: str

    @classmethod
    def parse(cls, text: str) -> Namespace:
        match = _NAMESPACE_RE.fullmatch(text or "")
        if not match:
            raise NamespaceError(f"invalid namespace {text!r}: {NAMESPACE_RULE}")
        return cls(match.group(1), match.group(2))

    def __str__(self) -> str:
        return f"{self.tenant}:{self.service}"


@dataclass(frozen=True)
class GoldenQuery:
    """A question whose answer (one of `expected`) must be in the top results of search."""

    question: str
    expected: tuple[str, ...]


@dataclass(frozen=True)
class NamespaceSource:
    """Where a namespace's metrics come from: a Prometheus server or a snapshot file, plus a selector."""

    namespace: Namespace
    selector: str
    selector_kind: str = "target"
    prometheus_url: str | None = None
    snapshot: Path | None = None
    series_snapshot: Path | None = None
    """A saved `/api/v1/series` answer: where a snapshot namespace's label schemas come from."""
    golden_queries: tuple[GoldenQuery, ...] = field(default=())


@dataclass(frozen=True)
class DiscoveryRule:
    """Find namespaces from Prometheus target labels: `tenant_label:service_label`."""

    prometheus_url: str | None
    tenant_label: str = "tenant"
    service_label: str = "service"
    selector_kind: str = "target"


@dataclass(frozen=True)
class Registry:
    """The registered namespaces and the discovery rule, with every Prometheus URL already resolved: an entry or a
    rule without its own `prometheus_url` reads from the default one (METRICS_INDEX_PROMETHEUS_URL)."""

    sources: dict[str, NamespaceSource]
    discovery: DiscoveryRule | None = None
    default_prometheus_url: str | None = None

    def source_for(self, namespace: str) -> NamespaceSource:
        """The registered source; else, when the registry has a `discover:` rule, the targets whose tenant and
        service labels match; else the default Prometheus with the selector `{job="<service>"}`."""
        ns = Namespace.parse(namespace)
        if namespace in self.sources:
            return self.sources[namespace]
        rule = self.discovery
        url = rule.prometheus_url if rule else self.default_prometheus_url
        if not url:
            raise NamespaceError(f"namespace {namespace!r} is not in the registry and no Prometheus URL is configured")
        if rule:
            labels = {rule.tenant_label: ns.tenant, rule.service_label: ns.service}
            return NamespaceSource(ns, selector_for_labels(labels), rule.selector_kind, prometheus_url=url)
        return NamespaceSource(ns, selector=f'{{job="{ns.service}"}}', prometheus_url=url)


def selector_for_labels(labels: dict[str, str]) -> str:
    """A PromQL selector matching exactly these label values."""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def load_registry(path: str | Path | None = None, default_prometheus_url: str | None = None) -> Registry:
    """Read and validate a registry file; relative snapshot paths are resolved against the file's folder, and
    entries without a snapshot or a URL of their own get `default_prometheus_url`."""
    path = Path(path) if path else DEFAULT_REGISTRY_PATH
    if not path.exists():
        raise NamespaceError(f"namespace registry {path} does not exist")
    document = yaml.safe_load(path.read_text()) or {}
    if not isinstance(document, dict):
        raise NamespaceError(f"namespace registry {path}: the top level must be a mapping")
    entries = document.get("namespaces") or {}
    if not isinstance(entries, dict):
        raise NamespaceError(f"namespace registry {path}: 'namespaces' must be a mapping")
    sources = {name: _parse_entry(path, name, entry or {}, default_prometheus_url) for name, entry in entries.items()}
    discovery = document.get("discover")
    rule = None
    if discovery:
        rule = DiscoveryRule(
            prometheus_url=discovery.get("prometheus_url") or default_prometheus_url,
            tenant_label=discovery.get("tenant_label", "tenant"),
            service_label=discovery.get("service_label", "service"),
            selector_kind=_selector_kind(path, "discover", discovery.get("selector_kind", "target")),
        )
    return Registry(sources=sources, discovery=rule, default_prometheus_url=default_prometheus_url)


def _parse_entry(path: Path, name: str, entry: dict, default_prometheus_url: str | None) -> NamespaceSource:
    try:
        namespace = Namespace.parse(str(name))
    except NamespaceError as error:
        raise NamespaceError(f"namespace registry {path}: {error}") from None
    if not isinstance(entry, dict):
        raise NamespaceError(f"namespace registry {path}: entry {name!r} must be a mapping")
    snapshot = entry.get("snapshot")
    series_snapshot = entry.get("series_snapshot")
    url = entry.get("prometheus_url")
    if snapshot and url:
        raise NamespaceError(f"namespace registry {path}: {name!r} has both 'snapshot' and 'prometheus_url'")
    golden = tuple(
        GoldenQuery(str(q["question"]), tuple(_as_list(q["expected"]))) for q in entry.get("golden_queries") or ()
    )
    return NamespaceSource(
        namespace=namespace,
        selector=entry.get("selector") or f'{{job="{namespace.service}"}}',
        selector_kind=_selector_kind(path, name, entry.get("selector_kind", "target")),
        prometheus_url=None if snapshot else url or default_prometheus_url,
        snapshot=(path.parent / snapshot).resolve() if snapshot else None,
        series_snapshot=(path.parent / series_snapshot).resolve() if series_snapshot else None,
        golden_queries=golden,
    )


def _selector_kind(path: Path, name: str, kind: str) -> str:
    if kind not in SELECTOR_KINDS:
        raise NamespaceError(
            f"namespace registry {path}: {name!r} has selector_kind {kind!r}; expected one of {SELECTOR_KINDS}"
        )
    return kind


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
