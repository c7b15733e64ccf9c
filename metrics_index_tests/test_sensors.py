"""The namespace sensor: tick planning as a plain function, then the sensor itself on a real Dagster instance against
a registry file and a live Prometheus whose targets carry tenant and service labels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dagster import (
    AddDynamicPartitionsRequest,
    DagsterInstance,
    DeleteDynamicPartitionsRequest,
    SensorResult,
    build_sensor_context,
)

from metrics_index.definitions import index_namespace_job
from metrics_index.jobs import ENRICHER_TAG
from metrics_index.namespaces import DEFAULT_REGISTRY_PATH, DiscoveryRule
from metrics_index.resources import EnricherResource, PrometheusResource
from metrics_index.sensors import (
    NamespaceState,
    Observation,
    build_namespace_sensor,
    dump_cursor,
    fingerprint,
    load_cursor,
    plan_tick,
)
from metrics_index.settings import PlatformSettings
from metrics_index.sources import SourceError
from metrics_index.sources.prometheus import discover_namespaces
from metrics_index.testing.servers import PrometheusStack
from metrics_index_tests.platform import LabelledPrometheus

DEMO_SNAPSHOT = DEFAULT_REGISTRY_PATH.parent / "demo-targets-metadata.json"


# --- planning, no servers ------------------------------------------------------------------------------------------


def test_new_namespaces_get_partitions_and_runs_up_to_the_bound() -> None:
    observation = Observation({"a:x": "f1", "b:x": "f2", "c:x": "f3"})
    plan = plan_tick({}, observation, partitions={"a:x"}, max_runs=2, delete_removed=False)
    assert plan.add == ["b:x", "c:x"]
    assert plan.runs == [("a:x", "a:x#1:f1"), ("b:x", "b:x#1:f2")]
    assert plan.deferred == ["c:x"]
    assert set(plan.cursor) == {"a:x", "b:x"}  # c:x is not remembered, so the next tick requests it

    later = plan_tick(plan.cursor, observation, {"a:x", "b:x", "c:x"}, max_runs=2, delete_removed=False)
    assert (later.add, later.runs, later.deferred) == ([], [("c:x", "c:x#1:f3")], [])


def test_only_changed_namespaces_run_again_and_run_keys_never_repeat() -> None:
    previous = {"a:x": NamespaceState("f1", 1), "b:x": NamespaceState("f2", 3)}
    unchanged = plan_tick(previous, Observation({"a:x": "f1", "b:x": "f2"}), {"a:x", "b:x"}, 10, False)
    assert unchanged.runs == [] and unchanged.cursor == previous
    assert unchanged.summary() == "0 runs requested, 0 namespaces added"

    changed = plan_tick(previous, Observation({"a:x": "f1", "b:x": "f9"}), {"a:x", "b:x"}, 10, False)
    assert changed.runs == [("b:x", "b:x#4:f9")]
    back = plan_tick(changed.cursor, Observation({"a:x": "f1", "b:x": "f2"}), {"a:x", "b:x"}, 10, False)
    assert back.runs == [("b:x", "b:x#5:f2")]  # the same names as two runs ago, yet a new key


def test_unreadable_namespaces_get_a_partition_but_no_run() -> None:
    plan = plan_tick({"a:x": NamespaceState("f1", 1)}, Observation({"a:x": None, "b:x": None}), {"a:x"}, 10, False)
    assert (plan.add, plan.runs) == (["b:x"], [])
    assert plan.cursor == {"a:x": NamespaceState("f1", 1)}


def test_removed_namespaces_are_reported_and_deleted_only_when_configured() -> None:
    previous = {"a:x": NamespaceState("f1", 1), "gone:x": NamespaceState("f2", 1)}
    kept = plan_tick(previous, Observation({"a:x": "f1"}), {"a:x", "gone:x"}, 10, delete_removed=False)
    assert (kept.removed, kept.delete, set(kept.cursor)) == (["gone:x"], [], {"a:x"})
    deleted = plan_tick(previous, Observation({"a:x": "f1"}), {"a:x", "gone:x"}, 10, delete_removed=True)
    assert deleted.delete == ["gone:x"]


def test_nothing_counts_as_removed_while_discovery_fails() -> None:
    previous = {"a:x": NamespaceState("f1", 1), "found:x": NamespaceState("f2", 1)}
    observation = Observation({"a:x": "f1"}, discovery_failed=True)
    plan = plan_tick(previous, observation, {"a:x", "found:x"}, 10, delete_removed=True)
    assert (plan.removed, plan.delete, plan.cursor) == ([], [], previous)


def test_cursor_round_trip_and_fingerprint_ignores_order() -> None:
    states = {"a:x": NamespaceState("f1", 2)}
    assert load_cursor(dump_cursor(states)) == states
    assert load_cursor(None) == {}
    assert fingerprint(["b", "a", "a"]) == fingerprint(["a", "b"]) != fingerprint(["a"])


# --- the sensor on a real instance and a live Prometheus ------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled_prometheus(prometheus_stack: PrometheusStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = LabelledPrometheus.start(tmp_path_factory.mktemp("labelled"), prometheus_stack.node_exporter_url)
    try:
        yield server.url
    finally:
        server.stop()


def test_discovery_groups_target_metadata_by_tenant_and_service(labelled_prometheus: str, tmp_path: Path) -> None:
    found = discover_namespaces(DiscoveryRule(prometheus_url=labelled_prometheus))
    assert set(found) == {"acme:node", "acme:prometheus"}
    assert "node_cpu_seconds_total" in found["acme:node"]
    assert "prometheus_http_requests_total" not in found["acme:node"]
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump({"namespaces": {}, "discover": {"tenant_label": "tenant"}}))
    # A rule without its own URL reads from the resource's default Prometheus. Prometheus exports some of its own
    # metrics only once they first count something, so the second read may hold more of them, never fewer.
    again = PrometheusResource(registry_path=str(registry), url=labelled_prometheus).discover()
    assert set(again) == set(found)
    assert all(found[namespace] <= again[namespace] for namespace in found)
    with pytest.raises(SourceError, match="unreachable"):
        PrometheusResource(registry_path=str(registry), url="http://127.0.0.1:9", timeout_seconds=2).discover()
    with pytest.raises(SourceError, match="no prometheus_url"):
        PrometheusResource(registry_path=str(registry)).discover()
    assert PrometheusResource(url=labelled_prometheus).discover() == {}  # the bundled registry has no rule


class SensorHarness:
    """Ticks the namespace sensor as the daemon would: the cursor carried over, partition requests applied."""

    def __init__(self, instance: DagsterInstance, registry: Path, settings: PlatformSettings) -> None:
        self.instance = instance
        self.sensor = build_namespace_sensor(index_namespace_job, settings)
        self.resources = {
            "prometheus": PrometheusResource(registry_path=str(registry)),
            "enricher": EnricherResource(mode="rules"),
        }
        self.cursor: str | None = None

    def tick(self) -> SensorResult:
        context = build_sensor_context(instance=self.instance, cursor=self.cursor, resources=self.resources)
        result = self.sensor(context)
        assert isinstance(result, SensorResult)
        for request in result.dynamic_partitions_requests or []:
            if isinstance(request, AddDynamicPartitionsRequest):
                self.instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
            elif isinstance(request, DeleteDynamicPartitionsRequest):
                for key in request.partition_keys:
                    self.instance.delete_dynamic_partition(request.partitions_def_name, key)
        self.cursor = result.cursor
        return result

    @property
    def partitions(self) -> set[str]:
        return set(self.instance.get_dynamic_partitions("namespace"))


def _write(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


def _snapshot(job: str) -> dict:
    return {"snapshot": str(DEMO_SNAPSHOT), "selector": f'{{job="{job}"}}'}


def _runs(result: SensorResult) -> dict[str, str]:
    return {request.partition_key: request.run_key for request in result.run_requests or []}


def test_sensor_registers_discovers_bounds_and_follows_changes(
    dagster_instance: DagsterInstance, labelled_prometheus: str, tmp_path: Path
) -> None:
    document = {"namespaces": {"demo:redis": _snapshot("redis")}, "discover": {"prometheus_url": labelled_prometheus}}
    registry = _write(tmp_path / "namespaces.yaml", document)
    harness = SensorHarness(dagster_instance, registry, PlatformSettings(max_runs_per_tick=2))

    first = harness.tick()
    assert harness.partitions == {"demo:redis", "acme:node", "acme:prometheus"}
    assert set(_runs(first)) == {"acme:node", "acme:prometheus"}  # new ones alphabetically, two per tick
    assert all(request.tags[ENRICHER_TAG] == "rules" for request in first.run_requests)

    # The labelled Prometheus scrapes itself, and its own metric families appear at first use (a query, a
    # compaction), so acme:prometheus may change on its own between ticks; node and the registry may not.
    second = harness.tick()
    assert set(_runs(second)) - {"acme:prometheus"} == {"demo:redis"}
    third = harness.tick()
    assert set(_runs(third)) <= {"acme:prometheus"}
    if not third.run_requests:
        assert "0 runs requested" in third.skip_reason.skip_message

    document["namespaces"]["demo:redis"] = _snapshot("pushgateway")  # another set of metric names
    _write(registry, document)
    changed = harness.tick()
    assert set(_runs(changed)) - {"acme:prometheus"} == {"demo:redis"}
    assert _runs(changed)["demo:redis"] != _runs(second)["demo:redis"]


def test_sensor_reports_removed_namespaces_and_deletes_them_when_configured(
    dagster_instance: DagsterInstance, tmp_path: Path
) -> None:
    namespaces = {"demo:redis": _snapshot("redis"), "demo:node": _snapshot("node")}
    registry = _write(tmp_path / "namespaces.yaml", {"namespaces": namespaces})
    harness = SensorHarness(dagster_instance, registry, PlatformSettings(delete_removed_namespaces=True))
    harness.tick()
    assert harness.partitions == {"demo:redis", "demo:node"}

    _write(registry, {"namespaces": {"demo:node": _snapshot("node")}})
    result = harness.tick()
    assert harness.partitions == {"demo:node"}
    assert "1 left the registry" in result.skip_reason.skip_message

    keep = SensorHarness(dagster_instance, registry, PlatformSettings())
    keep.cursor = harness.cursor
    dagster_instance.add_dynamic_partitions("namespace", ["demo:redis"])
    _write(registry, {"namespaces": {}})
    keep.tick()
    assert keep.partitions == {"demo:node", "demo:redis"}  # reported, not deleted
    assert load_cursor(keep.cursor) == {}


def test_sensor_survives_an_unreachable_prometheus(dagster_instance: DagsterInstance, tmp_path: Path) -> None:
    registry = _write(
        tmp_path / "namespaces.yaml",
        {
            "namespaces": {"demo:redis": _snapshot("redis"), "live:app": {"prometheus_url": "http://127.0.0.1:9"}},
            "discover": {"prometheus_url": "http://127.0.0.1:9"},
        },
    )
    harness = SensorHarness(dagster_instance, registry, PlatformSettings())
    result = harness.tick()
    assert harness.partitions == {"demo:redis", "live:app"}
    assert set(_runs(result)) == {"demo:redis"}
