"""The four assets materialized with `dagster.materialize` on real Prometheus, Redis and Chroma."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import redis
from dagster import ConfigurableResource, Definitions

from metrics_index.api import materialization_metadata
from metrics_index.enrichment.vocabulary import (
    CATEGORIES,
    ENRICHED_COLUMNS,
    GOLDEN_SIGNALS,
    METER_TYPES,
    PROVENANCE_COLUMNS,
)
from metrics_index.namespaces import NAMESPACE_PARTITIONS, NAMESPACE_RULE
from metrics_index.resources import PrometheusResource
from metrics_index.stores.name_set import names_key, promql_names
from metrics_index.stores.revision import revision_key
from metrics_index.testing.servers import (
    ManagedProcess,
    PrometheusStack,
    RedisServer,
    ScriptedHTTPServer,
    free_port,
    http_get,
    wait_until,
)
from metrics_index_tests.project import Project, step_failures, target_entry

ASSETS = ("raw_metric_metadata", "metric_name_set", "enriched_metric_metadata", "metric_semantic_index")
ENRICHED_FIELDS = (*ENRICHED_COLUMNS, *PROVENANCE_COLUMNS)
APP_METRICS = [
    target_entry("app_requests_total", "counter", "Requests served."),
    target_entry("app_request_duration_seconds", "histogram", "Time to serve a request.", "seconds"),
    target_entry("app_queue_length", "gauge", "Jobs waiting in the queue."),
]


def test_definitions_load_every_asset_and_job() -> None:
    from metrics_index.definitions import defs

    assert isinstance(defs, Definitions)
    Definitions.validate_loadable(defs)
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    assert set(ASSETS) <= set(specs)
    for name in ASSETS:
        assert specs[name].partitions_def == NAMESPACE_PARTITIONS, name
    for job in defs.resolve_all_job_defs():
        assert job.name
    assert set(ASSETS) <= {node.name for node in defs.resolve_job_def("index_namespace").nodes}


def test_loading_the_definitions_leaves_the_store_libraries_for_the_steps() -> None:
    """Dagster's code server loads the project at every start and reload and evaluates the sensors, none of which
    opens the Chroma store: Chroma and the embedding model are imported by the steps that open it (about 1 s of
    CPU less before a fresh platform's first run)."""
    probe = "import sys, metrics_index.definitions; print(sorted(m for m in {0} if m in sys.modules))"
    heavy = ["chromadb", "metrics_index.embeddings", "onnxruntime", "tokenizers"]
    loaded = subprocess.run(
        [sys.executable, "-c", probe.format(heavy)], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]", loaded


WORKSPACE_QUERY = """{
  workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } }
  } } }
  assetNodes { assetKey { path } }
}"""


def test_dagster_dev_starts_and_shows_every_asset(tmp_path: Path) -> None:
    """`dagster dev -w workspace.yaml`, as the README starts it, loads the code location without errors."""
    root, port = Path(__file__).parents[1], free_port()
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dev = ManagedProcess(
        "dagster-dev",
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", str(root / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", str(port)],
        tmp_path,
        cwd=root,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "DAGSTER_HOME": str(tmp_path),
            "METRICS_INDEX_AUTOMATION": "off",
        },
    )  # fmt: skip
    dev.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_get(f"{url}/server_info")[0] == 200, "dagster dev", timeout=120, process=dev)
        request = urllib.request.Request(
            f"{url}/graphql", json.dumps({"query": WORKSPACE_QUERY}).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            data = json.load(response)["data"]
    finally:
        dev.stop()
    [location] = data["workspaceOrError"]["locationEntries"]
    assert (location["name"], location["loadStatus"], location["locationOrLoadError"]["__typename"]) == (
        "metrics-index",
        "LOADED",
        "RepositoryLocation",
    ), location
    assert set(ASSETS) <= {"/".join(node["assetKey"]["path"]) for node in data["assetNodes"]}


def test_live_namespace_is_indexed_end_to_end(project: Project, prometheus_stack: PrometheusStack) -> None:
    namespace = "live:node"
    project.register(namespace, prometheus_url=prometheus_stack.url, selector='{job="node"}')
    result = project.materialize(namespace)
    assert result.success, step_failures(result)

    raw = project.catalog("raw_metric_metadata", namespace)
    assert set(raw["metric_name"]) == {entry["metric"] for entry in prometheus_stack.target_metadata("node")}
    assert project.names(namespace) == promql_names(raw)
    assert "node_cpu_seconds_total" in project.names(namespace)

    enriched = project.catalog("enriched_metric_metadata", namespace)
    assert list(enriched["metric_name"]) == sorted(raw["metric_name"])
    assert set(ENRICHED_FIELDS) <= set(enriched.columns)
    assert set(enriched["enricher"]) == {"rules"}
    assert enriched["input_hash"].str.len().min() > 0
    assert set(enriched["golden_signal_type"]) <= set(GOLDEN_SIGNALS)
    assert set(enriched["meter_type"]) <= set(METER_TYPES)
    assert set(enriched["category"]) <= set(CATEGORIES)
    for category, subcategory in zip(enriched["category"], enriched["subcategory"], strict=True):
        assert subcategory in CATEGORIES[category].subcategories, (category, subcategory)

    index = project.index()
    documents = index.documents(namespace)
    assert list(documents["id"]) == [f"{namespace}/{name}" for name in sorted(raw["metric_name"])]
    assert set(documents["namespace"]) == {namespace}

    n = len(raw)
    metadata = materialization_metadata(result)
    assert set(metadata) == set(ASSETS)
    assert metadata["raw_metric_metadata"]["metrics"] == n
    assert metadata["metric_name_set"]["names"] == len(project.names(namespace))
    assert (metadata["enriched_metric_metadata"]["enriched"], metadata["enriched_metric_metadata"]["failed"]) == (n, 0)
    assert metadata["enriched_metric_metadata"]["success_rate"] == 1.0
    index_counts = {k: metadata["metric_semantic_index"][k] for k in ("metrics", "indexed", "unchanged", "removed")}
    assert index_counts == {"metrics": n, "indexed": n, "unchanged": 0, "removed": 0}
    for asset in ASSETS:
        assert metadata[asset]["duration_seconds"] >= 0, asset


def test_series_selector_namespace_and_an_unchanged_rerun(project: Project, prometheus_stack: PrometheusStack) -> None:
    namespace = "live:prometheus"
    project.register(namespace, prometheus_url=prometheus_stack.url, selector_kind="series")
    assert project.materialize(namespace).success
    raw = project.catalog("raw_metric_metadata", namespace)
    names = project.names(namespace)
    assert "prometheus_http_request_duration_seconds_bucket" in names
    assert "prometheus_http_request_duration_seconds_bucket" not in set(raw["metric_name"])
    label_values = project.catalog("enriched_metric_metadata", namespace).set_index("metric_name")["label_values"]

    rerun = project.materialize(namespace)
    assert rerun.success
    metadata = materialization_metadata(rerun)
    rerun_raw = project.catalog("raw_metric_metadata", namespace)
    unchanged = len(set(raw["metric_name"]) & set(rerun_raw["metric_name"]))
    # Metrics whose inputs did not change are neither re-enriched nor re-embedded; a metric whose label values changed
    # (a handler first requested between the runs) is embedded again, as its vector holds them.
    rerun_values = project.catalog("enriched_metric_metadata", namespace).set_index("metric_name")["label_values"]
    relabelled = int((label_values != rerun_values.reindex(label_values.index)).sum())
    assert metadata["enriched_metric_metadata"]["reused"] >= unchanged - 2  # a help text may differ between scrapes
    assert metadata["metric_semantic_index"]["unchanged"] >= unchanged - relabelled - 2
    assert project.index().count(namespace) == len(rerun_raw)


def test_metric_that_vanished_is_removed_from_redis_and_chroma(project: Project) -> None:
    project.register("acme:app", snapshot=project.write_snapshot("app.json", APP_METRICS), selector='{job="app"}')
    project.register("acme:web", snapshot=project.write_snapshot("web.json", APP_METRICS), selector='{job="app"}')
    assert project.materialize("acme:app").success
    assert project.materialize("acme:web").success
    histogram = "app_request_duration_seconds"
    assert {histogram, f"{histogram}_bucket"} <= project.names("acme:app")
    assert project.names("acme:web") == project.names("acme:app")

    project.write_snapshot("app.json", [e for e in APP_METRICS if e["metric"] != histogram])
    result = project.materialize("acme:app")
    assert result.success, step_failures(result)

    assert project.names("acme:app") == {"app_requests_total", "app_queue_length"}
    assert set(project.index().documents("acme:app")["metric_name"]) == {"app_requests_total", "app_queue_length"}
    metadata = materialization_metadata(result)
    assert (metadata["metric_semantic_index"]["removed"], metadata["metric_semantic_index"]["indexed"]) == (1, 0)
    assert metadata["enriched_metric_metadata"]["reused"] == 2
    # Each completed sync bumped its own namespace's revision, which readers watch.
    assert metadata["metric_semantic_index"]["revision"] == 2
    assert project.revisions("acme:app", "acme:web", "acme:never") == {"acme:app": 2, "acme:web": 1, "acme:never": 0}
    # The other namespace still has it.
    assert histogram in project.names("acme:web")
    assert project.index().count("acme:web") == 3


def broken_prometheus(http_stub: ScriptedHTTPServer, case: str) -> str:
    if case == "down":
        return f"http://127.0.0.1:{free_port()}"
    http_stub.answer_healthy()
    if case == "http-500":
        http_stub.answer("/api/v1/targets/metadata", status=500, body="storage is on fire", content_type="text/plain")
    else:
        http_stub.answer("/api/v1/targets/metadata", body="<html>login required</html>", content_type="text/html")
    return http_stub.url


@pytest.mark.parametrize(
    ("case", "expected"),
    [("down", "is unreachable"), ("http-500", "answered HTTP 500"), ("garbage", "did not answer JSON")],
)
def test_broken_prometheus_fails_the_run_and_touches_nothing_downstream(
    project: Project, http_stub: ScriptedHTTPServer, case: str, expected: str
) -> None:
    project.register("acme:app", snapshot=project.write_snapshot("app.json", APP_METRICS))
    assert project.materialize("acme:app").success
    before = (project.names("acme:app"), project.index().documents("acme:app"))

    project.register("acme:app", prometheus_url=broken_prometheus(http_stub, case), selector='{job="app"}')
    result = project.materialize("acme:app")

    assert not result.success
    failures = step_failures(result)
    assert list(failures) == ["raw_metric_metadata"]
    assert expected in failures["raw_metric_metadata"]
    assert materialization_metadata(result) == {}
    assert project.names("acme:app") == before[0]
    assert project.index().documents("acme:app").equals(before[1])
    assert len(project.catalog("raw_metric_metadata", "acme:app")) == len(APP_METRICS)


def test_malformed_namespace_partition_fails_with_the_rule(project: Project) -> None:
    project.register("acme:app", snapshot=project.write_snapshot("app.json", APP_METRICS))
    result = project.materialize("Acme App")
    assert not result.success
    assert NAMESPACE_RULE in step_failures(result)["raw_metric_metadata"]
    assert materialization_metadata(result) == {}


class RedisStoppingPrometheus(PrometheusResource):
    """Fetches as usual, then shuts Redis down (saving its data): Redis goes away after the run has started."""

    redis_url: str

    def fetch(self, namespace: str) -> pd.DataFrame:
        frame = super().fetch(namespace)
        with redis.Redis.from_url(self.redis_url) as client:
            client.shutdown(save=True)
        return frame


def test_redis_going_away_mid_run_gives_a_clear_error_and_loses_nothing(
    project: Project, redis_process: RedisServer
) -> None:
    project.redis_url = redis_process.url
    project.register("acme:app", snapshot=project.write_snapshot("app.json", APP_METRICS))
    assert project.materialize("acme:app").success
    first_names = project.names("acme:app")

    project.write_snapshot("app.json", [*APP_METRICS, target_entry("app_errors_total", "counter", "Failed requests.")])
    prometheus: ConfigurableResource = RedisStoppingPrometheus(
        registry_path=str(project.registry_path), redis_url=redis_process.url
    )
    result = project.materialize("acme:app", resources={"prometheus": prometheus})

    assert not result.success
    failure = step_failures(result)["metric_name_set"]
    assert "Redis" in failure and str(redis_process.port) in failure, failure
    assert "metric_name_set" not in materialization_metadata(result)
    assert len(project.catalog("raw_metric_metadata", "acme:app")) == len(APP_METRICS) + 1

    redis_process.stop()  # reap the process that shut itself down
    redis_process.start()
    assert project.names("acme:app") == first_names, "the live set must be the old one, whole"
    with redis.Redis.from_url(redis_process.url) as client:
        assert sorted(client.keys("*")) == [names_key("acme:app").encode(), revision_key("acme:app").encode()]

    rerun = project.materialize("acme:app")
    assert rerun.success, step_failures(rerun)
    assert project.names("acme:app") == first_names | {"app_errors_total"}
    assert project.index().count("acme:app") == len(APP_METRICS) + 1


def test_a_selector_that_matches_nothing_fails_instead_of_emptying_the_namespace(project: Project) -> None:
    project.register("acme:app", snapshot=project.write_snapshot("app.json", APP_METRICS))
    assert project.materialize("acme:app").success
    before = (project.names("acme:app"), project.index().documents("acme:app"))

    project.register("acme:app", snapshot="app.json", selector='{job="typo"}')
    result = project.materialize("acme:app")
    assert not result.success
    assert "returned no metrics for acme:app" in step_failures(result)["raw_metric_metadata"]
    assert project.names("acme:app") == before[0]
    assert project.index().documents("acme:app").equals(before[1])

    emptied = project.materialize(
        "acme:app", run_config={"ops": {"raw_metric_metadata": {"config": {"allow_empty": True}}}}
    )
    assert emptied.success, step_failures(emptied)
    assert project.names("acme:app") == set()
    assert project.index().count("acme:app") == 0
