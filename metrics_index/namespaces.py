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
MAX_NAMESPACE_LENGTH = 128
"""A namespace names a folder and a file of the catalog (at most 255 bytes each on common file systems) and begins
every Redis key and Chroma id of its metrics; 128 characters leaves room for all of them."""
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
        if isinstance(text, str) and len(text) > MAX_NAMESPACE_LENGTH:
            raise NamespaceError(
                f"namespace {text[:40]!r}… is {len(text)} characters long; at most {MAX_NAMESPACE_LENGTH} are allowed, "
                "because it names a folder and a file of the catalog and begins every Redis key and Chroma id"
            )
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
    entries without a snapshot or a URL of their own get `default_prometheus_url`. Every error names the file, the
    line and the field."""
    path = Path(path) if path else DEFAULT_REGISTRY_PATH
    if not path.exists():
        raise NamespaceError(f"namespace registry {path} does not exist")
    try:
        document = yaml.load(path.read_text(), Loader=_RegistryLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(part for part in (error.context, error.problem) if part)
        raise NamespaceError(f"namespace registry {path}{where}: {problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise NamespaceError(f"namespace registry {path}: {error}") from None
    document = document if document is not None else _Located()
    if not isinstance(document, _Located):
        raise NamespaceError(f"namespace registry {path}: the top level must be a mapping")
    _check_fields(path, "the top level", document, _TOP_FIELDS)
    entries = document.get("namespaces") or _Located()
    sources = {}
    for name, entry in entries.items():
        where = _Where(path, entries.lines.get(name))
        sources[name] = _parse_entry(where, name, entry if entry is not None else _Located(), default_prometheus_url)
    discovery = document.get("discover")
    rule = None
    if discovery:
        where = _Where(path, document.lines.get("discover"))
        _check_fields(path, "'discover'", discovery, _DISCOVER_FIELDS)
        rule = DiscoveryRule(
            prometheus_url=discovery.get("prometheus_url") or default_prometheus_url,
            tenant_label=discovery.get("tenant_label") or "tenant",
            service_label=discovery.get("service_label") or "service",
            selector_kind=_selector_kind(where, "discover", discovery.get("selector_kind") or "target"),
        )
    return Registry(sources=sources, discovery=rule, default_prometheus_url=default_prometheus_url)


class _Located(dict):
    """A YAML mapping that remembers the line of each key (1-based), for error messages."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[object, int] = {}


@dataclass(frozen=True)
class _Where:
    path: Path
    line: int | None

    def __str__(self) -> str:
        return f"namespace registry {self.path}" + (f", line {self.line}" if self.line else "")


class _RegistryLoader(yaml.SafeLoader):
    """A SafeLoader whose mapping keys stay the text written (`1:2` is a namespace, not the sexagesimal number 62)
    and that refuses a key written twice instead of keeping the last one silently."""


def _construct_mapping(loader: _RegistryLoader, node: yaml.MappingNode) -> _Located:
    loader.flatten_mapping(node)
    mapping = _Located()
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(None, None, "a key must be plain text", key_node.start_mark)
        key = key_node.value
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (first on line {mapping.lines[key]})", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = key_node.start_mark.line + 1
    return mapping


_RegistryLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_TOP_FIELDS = {"namespaces": dict, "discover": dict}
_ENTRY_FIELDS = {
    "prometheus_url": str,
    "snapshot": str,
    "series_snapshot": str,
    "selector": str,
    "selector_kind": str,
    "golden_queries": list,
}
_DISCOVER_FIELDS = {"prometheus_url": str, "tenant_label": str, "service_label": str, "selector_kind": str}
_KIND_NAMES = {dict: "a mapping", list: "a list", str: "text"}


def _check_fields(path: Path, owner: str, mapping: object, fields: dict[str, type]) -> None:
    """Every key of `mapping` is a known field holding the documented kind of value (or nothing)."""
    if not isinstance(mapping, _Located):
        raise NamespaceError(f"namespace registry {path}: {owner} must be a mapping, not {_kind(mapping)}")
    for key, value in mapping.items():
        where = _Where(path, mapping.lines.get(key))
        if key not in fields:
            raise NamespaceError(f"{where}: {owner} has an unknown field {key!r}; the fields are {', '.join(fields)}")
        if value is not None and not isinstance(value, fields[key]):
            expected = _KIND_NAMES.get(fields[key], "text or a list")
            raise NamespaceError(f"{where}: {key!r} must be {expected} (in {owner}), not {_kind(value)}")


def _kind(value: object) -> str:
    return f"{type(value).__name__} {str(value)[:60]!r}"


def _parse_entry(where: _Where, name: str, entry: object, default_prometheus_url: str | None) -> NamespaceSource:
    try:
        namespace = Namespace.parse(name)
    except NamespaceError as error:
        raise NamespaceError(f"{where}: {error}") from None
    _check_fields(where.path, f"namespace {name!r}", entry, _ENTRY_FIELDS)
    assert isinstance(entry, _Located)
    snapshot = entry.get("snapshot")
    series_snapshot = entry.get("series_snapshot")
    url = entry.get("prometheus_url")
    if snapshot and url:
        raise NamespaceError(f"{where}: {name!r} has both 'snapshot' and 'prometheus_url'")
    return NamespaceSource(
        namespace=namespace,
        selector=entry.get("selector") or f'{{job="{namespace.service}"}}',
        selector_kind=_selector_kind(where, name, entry.get("selector_kind") or "target"),
        prometheus_url=None if snapshot else url or default_prometheus_url,
        snapshot=(where.path.parent / snapshot).resolve() if snapshot else None,
        series_snapshot=(where.path.parent / series_snapshot).resolve() if series_snapshot else None,
        golden_queries=_golden_queries(where.path, name, entry.get("golden_queries") or []),
    )


def _golden_queries(path: Path, name: str, queries: list) -> tuple[GoldenQuery, ...]:
    golden = []
    for number, query in enumerate(queries, 1):
        owner = f"golden query {number} of {name!r}"
        _check_fields(path, owner, query, {"question": str, "expected": (str, list)})  # type: ignore[dict-item]
        expected = _as_list(query.get("expected") or [])
        if not query.get("question") or not expected or not all(isinstance(e, str) for e in expected):
            line = query.lines.get("question") or query.lines.get("expected")
            raise NamespaceError(f"{_Where(path, line)}: {owner} needs a 'question' and 'expected' metric names")
        golden.append(GoldenQuery(query["question"], tuple(expected)))
    return tuple(golden)


def _selector_kind(where: _Where, name: str, kind: str) -> str:
    if kind not in SELECTOR_KINDS:
        raise NamespaceError(f"{where}: {name!r} has selector_kind {kind!r}; expected one of {SELECTOR_KINDS}")
    return kind


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
