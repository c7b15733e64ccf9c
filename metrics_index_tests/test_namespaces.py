"""Namespaces (`tenant:service`) and the registry file: the rules, and errors that name them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metrics_index.namespaces import (
    DEFAULT_REGISTRY_PATH,
    NAMESPACE_RULE,
    Namespace,
    NamespaceError,
    load_registry,
    selector_for_labels,
)

DEMO_NAMESPACES = {
    "demo:prometheus",
    "demo:node",
    "demo:redis",
    "demo:alertmanager",
    "demo:blackbox",
    "demo:pushgateway",
}


@pytest.mark.parametrize("text", ["production:order-service", "demo:node", "t1:svc_2.v3", "0:0"])
def test_valid_namespaces_parse_and_print_back(text: str) -> None:
    namespace = Namespace.parse(text)
    assert str(namespace) == text
    assert (namespace.tenant, namespace.service) == tuple(text.split(":"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "production",
        ":order-service",
        "production:",
        "Production:order-service",
        "production:order service",
        "production:order-service:v2",
        "production:order,service",
        "-production:order-service",
        "production:order-service\n",
        "prod/uction:order-service",
    ],
)
def test_malformed_namespace_error_names_the_rule(text: str) -> None:
    with pytest.raises(NamespaceError) as raised:
        Namespace.parse(text)
    assert repr(text) in str(raised.value)
    assert NAMESPACE_RULE in str(raised.value)


def test_bundled_registry_has_one_namespace_per_demo_job() -> None:
    registry = load_registry()
    assert set(registry.sources) == DEMO_NAMESPACES
    snapshot = json.loads((DEFAULT_REGISTRY_PATH.parent / "demo-targets-metadata.json").read_text())
    jobs = {entry["target"]["job"] for entry in snapshot["data"]}
    assert {source.namespace.service for source in registry.sources.values()} == jobs
    for name, source in registry.sources.items():
        assert source.snapshot is not None and source.snapshot.is_file(), name
        assert source.selector == f'{{job="{source.namespace.service}"}}'
        assert source.prometheus_url is None


def write_registry(directory: Path, text: str) -> Path:
    path = directory / "namespaces.yaml"
    path.write_text(text)
    return path


def test_registry_resolves_snapshots_against_its_folder_and_reads_every_field(tmp_path: Path) -> None:
    path = write_registry(
        tmp_path,
        """
namespaces:
  acme:orders:
    snapshot: data/orders.json
    selector: '{service="orders"}'
  acme:node:
    prometheus_url: http://prometheus.example:9090
    selector_kind: series
    golden_queries:
      - question: free disk
        expected: node_filesystem_avail_bytes
""",
    )
    registry = load_registry(path)
    orders, node = registry.sources["acme:orders"], registry.sources["acme:node"]
    assert orders.snapshot == (tmp_path / "data" / "orders.json").resolve()
    assert (orders.selector, orders.selector_kind, orders.prometheus_url) == ('{service="orders"}', "target", None)
    assert (node.selector, node.selector_kind) == ('{job="node"}', "series")
    assert node.prometheus_url == "http://prometheus.example:9090"
    assert [(q.question, q.expected) for q in node.golden_queries] == [("free disk", ("node_filesystem_avail_bytes",))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("namespaces:\n  Acme:orders: {}\n", NAMESPACE_RULE),
        ("namespaces:\n  acme:orders:\n    snapshot: a.json\n    prometheus_url: http://x\n", "both"),
        ("namespaces:\n  acme:orders:\n    selector_kind: regex\n", "selector_kind 'regex'"),
        ("namespaces: [acme:orders]\n", "'namespaces' must be a mapping"),
        ("- acme:orders\n", "top level must be a mapping"),
        ("namespaces:\n  acme:orders: just-a-string\n", "must be a mapping"),
    ],
)
def test_malformed_registry_names_the_file_and_the_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = write_registry(tmp_path, text)
    with pytest.raises(NamespaceError) as raised:
        load_registry(path)
    assert str(path) in str(raised.value)
    assert expected in str(raised.value)


def test_missing_registry_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NamespaceError, match="does not exist"):
        load_registry(tmp_path / "nowhere.yaml")


def test_unregistered_namespace_defaults_to_its_job_on_the_default_prometheus(tmp_path: Path) -> None:
    path = write_registry(tmp_path, "namespaces: {}\n")
    registry = load_registry(path, "http://prometheus:9090")
    source = registry.source_for("staging:checkout")
    assert (source.selector, source.selector_kind) == ('{job="checkout"}', "target")
    assert source.prometheus_url == "http://prometheus:9090"
    with pytest.raises(NamespaceError, match="no Prometheus URL"):
        load_registry(path).source_for("staging:checkout")
    with pytest.raises(NamespaceError, match="lower-case"):
        registry.source_for("Staging:checkout")


def test_the_default_prometheus_is_resolved_once_when_the_registry_is_read(tmp_path: Path) -> None:
    text = (
        "namespaces:\n  acme:own: {prometheus_url: http://own:9090}\n  acme:plain: {}\n"
        "  acme:snap: {snapshot: s.json}\n"
    )
    registry = load_registry(write_registry(tmp_path, text), "http://default:9090")
    urls = {name: source.prometheus_url for name, source in registry.sources.items()}
    assert urls == {"acme:own": "http://own:9090", "acme:plain": "http://default:9090", "acme:snap": None}
    rule = load_registry(write_registry(tmp_path, "discover: {tenant_label: team}\n"), "http://default:9090").discovery
    assert rule is not None and rule.prometheus_url == "http://default:9090"


def test_discovered_namespace_is_read_by_its_tenant_and_service_labels(tmp_path: Path) -> None:
    text = "discover:\n  prometheus_url: http://discovery:9090\n  tenant_label: team\n  service_label: app\n"
    registry = load_registry(write_registry(tmp_path, text), "http://default:9090")
    source = registry.source_for("payments:ledger")
    assert (source.selector, source.selector_kind) == ('{app="ledger",team="payments"}', "target")
    assert source.prometheus_url == "http://discovery:9090"


def test_selector_for_labels_is_sorted_and_escaped() -> None:
    assert selector_for_labels({"service": 'a"b', "tenant": "c\\d"}) == '{service="a\\"b",tenant="c\\\\d"}'
