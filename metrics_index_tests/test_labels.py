"""Label schemas: bounds on values, a live Prometheus read against what /api/v1/series says, the cut and budget paths,
series snapshots, and the Redis label hash replaced atomically with the name set."""

from __future__ import annotations

import gzip
import json
import threading
import urllib.parse
from pathlib import Path

import pandas as pd
import pytest
import redis

from metrics_index.api import materialization_metadata, validate_metrics
from metrics_index.label_preference import label_values_text, prefer_labelled, wanted_labels, with_label_columns
from metrics_index.promql import hints_for, syntax_error
from metrics_index.resources import PrometheusResource
from metrics_index.search import search
from metrics_index.sources.labels import (
    HIGH_CARDINALITY,
    MAX_VALUES,
    SAMPLE_VALUES,
    LabelSchema,
    LabelSummary,
    family_schemas,
    fetch_label_schemas,
    read_series_snapshot,
    series_name_schemas,
    summarize,
    with_labels,
)
from metrics_index.sources.prometheus import PrometheusApi, fetch_raw_metadata
from metrics_index.stores.name_set import label_schemas, labels_key, names_key, promql_names, replace_names
from metrics_index.testing.servers import (
    PrometheusStack,
    ScriptedHTTPServer,
    free_port,
    http_get,
    prometheus_process,
    wait_until,
)
from metrics_index_tests.project import Project, step_failures
from metrics_index_tests.test_prometheus_source import live_source

NAMESPACE = "test:orders"


def series(name: str, count: int, label: str, **fixed: str) -> list[dict[str, str]]:
    return [{"__name__": name, label: f"v{i}", **fixed} for i in range(count)]


def test_a_label_keeps_all_its_values_a_sample_or_only_its_count() -> None:
    few = summarize(series("x", MAX_VALUES, "code", job="a", instance="i"))
    assert few.labels["code"].complete and len(few.labels["code"].values) == MAX_VALUES
    assert few.labels["job"].values == ("a",) and few.series == MAX_VALUES and few.targets == 1

    some = summarize(series("x", MAX_VALUES + 1, "handler")).labels["handler"]
    assert (some.count, len(some.values), some.complete) == (MAX_VALUES + 1, SAMPLE_VALUES, False)

    many = summarize(series("x", HIGH_CARDINALITY + 1, "handler")).labels["handler"]
    assert (many.count, many.values, many.complete) == (HIGH_CARDINALITY + 1, (), False)
    ids = summarize(series("x", MAX_VALUES + 1, "pod_uid")).labels["pod_uid"]
    assert (ids.count, ids.values) == (MAX_VALUES + 1, ())

    partial = summarize(series("x", 3, "code"), partial=True)
    assert partial.partial and not partial.labels["code"].complete
    assert LabelSchema.from_json(partial.to_json()) == partial


def test_families_take_their_series_and_each_series_name_its_own_labels() -> None:
    raw = pd.DataFrame(
        [("rpc_seconds", "histogram"), ("gc_seconds", "summary"), ("requests_total", "counter")],
        columns=["metric_name", "type"],
    )
    found = [
        {"__name__": "rpc_seconds_bucket", "le": "0.1", "method": "get"},
        {"__name__": "rpc_seconds_bucket", "le": "+Inf", "method": "get"},
        {"__name__": "rpc_seconds_count", "method": "get"},
        {"__name__": "gc_seconds", "quantile": "0.5"},
        {"__name__": "gc_seconds_sum"},
        {"__name__": "requests_total", "code": "200"},
        {"__name__": "unrelated_metric", "code": "500"},
    ]
    families = family_schemas(raw, found)
    assert set(families) == {"rpc_seconds", "gc_seconds", "requests_total"}
    assert set(families["rpc_seconds"].labels) == {"le", "method"} and families["rpc_seconds"].series == 3
    by_name = series_name_schemas(with_labels(raw, families))
    assert set(by_name["rpc_seconds_bucket"].labels) == {"le", "method"}
    assert set(by_name["rpc_seconds_sum"].labels) == {"method"}
    assert set(by_name["gc_seconds"].labels) == {"quantile"} and by_name["gc_seconds_count"].labels == {}
    assert by_name["requests_total"].labels["code"].values == ("200",)


def test_an_openmetrics_family_is_named_as_its_series_are() -> None:
    raw = pd.DataFrame(
        [
            ("orders", "counter"),  # OpenMetrics: the samples are orders_total
            ("redis_total_reads_processed", "counter"),  # the classic format: the samples carry the family's name
            ("build", "info"),
            ("queue_wait_seconds", "gaugehistogram"),
            ("unseen", "counter"),
        ],
        columns=["metric_name", "type"],
    )
    found = [
        {"__name__": "orders_total", "shop": "eu"},
        {"__name__": "orders_created", "shop": "eu"},
        {"__name__": "redis_total_reads_processed"},
        {"__name__": "build_info", "version": "1.2.3"},
        {"__name__": "queue_wait_seconds_bucket", "le": "+Inf"},
        {"__name__": "queue_wait_seconds_gcount"},
    ]
    labelled = with_labels(raw, family_schemas(raw, found))
    assert list(labelled["metric_name"]) == [
        "orders_total", "redis_total_reads_processed", "build_info", "queue_wait_seconds", "unseen"
    ]  # fmt: skip
    orders = LabelSchema.from_json(labelled["labels"][0])
    assert orders.names == ("orders_created", "orders_total") and orders.labels["shop"].values == ("eu",)
    names = promql_names(labelled)
    assert {"orders_total", "orders_created", "build_info", "queue_wait_seconds_gcount", "unseen"} <= names
    assert "queue_wait_seconds_gsum" in names  # a gauge histogram's series, seen or not
    assert not {"orders", "build"} & names
    by_name = series_name_schemas(labelled)
    assert (
        set(by_name["queue_wait_seconds_bucket"].labels) == {"le"} and by_name["queue_wait_seconds_gcount"].labels == {}
    )
    assert (
        LabelSchema.from_json('{"series": 1, "targets": 1, "partial": false, "labels": {}}').names == ()
    )  # stored before


OPENMETRICS_EXPOSITION = """\
# TYPE shop_orders counter
# HELP shop_orders Orders placed.
shop_orders_total{region="eu"} 3
shop_orders_created{region="eu"} 1.7e+09
shop_orders_total{region="us"} 5
shop_orders_created{region="us"} 1.7e+09
# TYPE shop_build info
# HELP shop_build Build information.
shop_build_info{version="1.2.3"} 1
# TYPE shop_in_flight gauge
# HELP shop_in_flight Orders being placed.
shop_in_flight 2
# EOF
"""


def test_an_openmetrics_exporter_is_validated_by_the_names_its_series_carry(
    project: Project, http_stub: ScriptedHTTPServer, tmp_path: Path
) -> None:
    """A real Prometheus scraping an exporter that speaks OpenMetrics keeps the family names (`shop_orders`) in its
    metadata; a query must say `shop_orders_total`, and validation answers for that name."""
    http_stub.answer(
        "/metrics",
        body=OPENMETRICS_EXPOSITION,
        content_type="application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
    port = free_port()
    target = {"job_name": "shop", "static_configs": [{"targets": [http_stub.url.removeprefix("http://")]}]}
    prometheus = prometheus_process(tmp_path / "prometheus", port, [target])
    url = f"http://127.0.0.1:{port}"
    prometheus.start()
    try:
        wait_until(lambda: len(api_series(url, "shop")) >= 4, "the OpenMetrics target's series", process=prometheus)
        query = urllib.parse.urlencode({"match_target": '{job="shop"}'})
        metadata = {
            m["metric"]: m["type"] for m in json.loads(http_get(f"{url}/api/v1/targets/metadata?{query}")[1])["data"]
        }
        assert metadata["shop_orders"] == "counter" and metadata["shop_build"] == "info"  # what Prometheus says
        namespace = "shop:orders"
        project.register(namespace, prometheus_url=url, selector='{job="shop"}')
        result = project.materialize(namespace)
    finally:
        prometheus.stop()
    assert result.success, step_failures(result)
    raw = project.catalog("raw_metric_metadata", namespace).set_index("metric_name")
    assert {"shop_orders_total", "shop_build_info", "shop_in_flight"} <= set(raw.index)
    assert LabelSchema.from_json(raw.loc["shop_orders_total", "labels"]).labels["region"].values == ("eu", "us")
    asked = ["shop_orders_total", "shop_orders_created", "shop_orders"]
    found = {v.name: v.known for v in validate_metrics(namespace, asked, project.env)}
    assert found == {"shop_orders_total": True, "shop_orders_created": True, "shop_orders": False}
    enriched = project.catalog("enriched_metric_metadata", namespace).set_index("metric_name")
    assert enriched.loc["shop_orders_total", "promql_hint"].startswith("sum by (region) (rate(shop_orders_total[")


def api_series(url: str, job: str) -> list[dict[str, str]]:
    query = urllib.parse.urlencode({"match[]": f'{{job="{job}"}}'})
    return json.loads(http_get(f"{url}/api/v1/series?{query}")[1])["data"]


@pytest.mark.parametrize("job", ["prometheus", "node"])
def test_live_schemas_match_what_the_series_api_says(prometheus_stack: PrometheusStack, job: str) -> None:
    """Series come and go while we read (Prometheus counts our own requests by handler), so a metric is compared
    when the API said the same about it just before and just after the read; nearly all of them must be."""
    raw = fetch_raw_metadata(live_source(prometheus_stack.url, job))
    before = family_schemas(raw, api_series(prometheus_stack.url, job))
    fetched = fetch_label_schemas(PrometheusApi(prometheus_stack.url), f'{{job="{job}"}}', raw)
    after = family_schemas(raw, api_series(prometheus_stack.url, job))
    assert (fetched.requests, fetched.cut, fetched.errors) == (1, False, [])
    stable = [name for name in before if before[name] == after.get(name)]
    assert len(stable) >= 0.9 * len(before) and len(before) >= 0.8 * len(raw)
    for name in stable:
        assert fetched.schemas[name] == before[name], name
    cpu = fetched.schemas.get("node_cpu_seconds_total") or fetched.schemas["process_cpu_seconds_total"]
    assert {"job", "instance"} <= set(cpu.labels) and cpu.labels["job"].values == (job,)


def test_a_cut_answer_is_read_metric_by_metric_within_the_budget(prometheus_stack: PrometheusStack) -> None:
    raw = fetch_raw_metadata(live_source(prometheus_stack.url, "node"))
    api = PrometheusApi(prometheus_stack.url)
    whole = fetch_label_schemas(api, '{job="node"}', raw)
    cut = fetch_label_schemas(api, '{job="node"}', raw, namespace_limit=20)
    assert cut.cut and cut.requests == 1 + len(raw) and cut.errors == []
    assert set(cut.schemas) == set(whole.schemas)
    assert cut.schemas["node_cpu_seconds_total"] == whole.schemas["node_cpu_seconds_total"]

    spent = fetch_label_schemas(api, '{job="node"}', raw, namespace_limit=20, budget_seconds=0)
    assert spent.requests == 1 and "time budget" in spent.errors[0]
    assert all(schema.partial for schema in spent.schemas.values())

    capped = fetch_label_schemas(api, '{job="node"}', raw, max_bytes=2_000, budget_seconds=0)
    assert capped.cut and capped.schemas == {} and capped.requests == 1


def test_a_series_snapshot_is_filtered_by_the_selector(tmp_path: Path) -> None:
    found = [*series("up", 2, "instance", job="node"), *series("up", 1, "instance", job="redis")]
    path = tmp_path / "series.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"status": "success", "data": found}).encode()))
    assert read_series_snapshot(path, '{job="node"}') == found[:2]
    plain = tmp_path / "series.json"
    plain.write_text(json.dumps({"status": "success", "data": found}))
    assert len(read_series_snapshot(plain, '{job=~".+"}')) == 3


def test_labels_are_replaced_with_the_name_set_and_never_outlive_it(redis_client: redis.Redis) -> None:
    replace_names(redis_client, NAMESPACE, ["a_total", "b_total"], {"a_total": "{}", "gone_total": "{}"})
    assert redis_client.hgetall(labels_key(NAMESPACE)) == {"a_total": "{}"}
    assert label_schemas(redis_client, NAMESPACE, ["a_total", "b_total"]) == {"a_total": "{}", "b_total": None}
    replace_names(redis_client, NAMESPACE, ["a_total"])
    assert not redis_client.exists(labels_key(NAMESPACE))
    assert redis_client.keys("*") == [names_key(NAMESPACE)]


def test_a_reader_sees_names_and_labels_of_one_version(redis_server: str, redis_client: redis.Redis) -> None:
    versions = {
        size: ([f"m{i}_total" for i in range(size)], {f"m{i}_total": str(size) for i in range(size)})
        for size in (2_000, 2_001)
    }
    replace_names(redis_client, NAMESPACE, *versions[2_000])
    seen: set[tuple[int, int]] = set()
    done = threading.Event()

    def read() -> None:
        with redis.Redis.from_url(redis_server, decode_responses=True) as reader:
            while not done.is_set():
                with reader.pipeline(transaction=True) as pipe:
                    seen.add(tuple(pipe.scard(names_key(NAMESPACE)).hlen(labels_key(NAMESPACE)).execute()))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for turn in range(60):
            replace_names(redis_client, NAMESPACE, *versions[2_001 if turn % 2 == 0 else 2_000])
    finally:
        done.set()
        reader.join()
    assert seen <= {(2_000, 2_000), (2_001, 2_001)} and seen


def test_live_labels_reach_the_catalog_and_redis(project: Project, prometheus_stack: PrometheusStack) -> None:
    namespace = "live:node"
    project.register(namespace, prometheus_url=prometheus_stack.url, selector='{job="node"}')
    result = project.materialize(namespace)
    assert result.success, step_failures(result)
    for asset in ("raw_metric_metadata", "enriched_metric_metadata"):
        frame = project.catalog(asset, namespace).set_index("metric_name")
        cpu = LabelSchema.from_json(frame.loc["node_cpu_seconds_total", "labels"])
        assert {"cpu", "mode", "job", "instance"} == set(cpu.labels), asset
        assert "idle" in cpu.labels["mode"].values
    metadata = materialization_metadata(result)
    raw_meta = metadata["raw_metric_metadata"]
    assert raw_meta["metrics_with_labels"] >= 0.8 * raw_meta["metrics"] and raw_meta["label_requests"] == 1
    assert metadata["enriched_metric_metadata"]["label_names"] == raw_meta["label_names"] > 5
    with redis.Redis.from_url(project.redis_url, decode_responses=True) as client:
        stored = label_schemas(client, namespace, ["node_cpu_seconds_total", "node_no_such_metric"])
    assert set(LabelSchema.from_json(stored["node_cpu_seconds_total"]).labels) == {"cpu", "mode", "job", "instance"}
    assert stored["node_no_such_metric"] is None

    found = search(project.index(), namespace, "cpu seconds by mode", k=3, explain=True)
    cpu_result = next(r for r in found if r.metric_name == "node_cpu_seconds_total")
    assert "label: mode" in cpu_result.matched and "mode" in cpu_result.promql


def test_a_question_asks_for_labels_after_by_per_each() -> None:
    assert {"status", "code", "status_code"} <= wanted_labels("errors by status code")
    assert "device" in wanted_labels("bytes received per interface")
    assert wanted_labels("free space on filesystems") == set()
    assert "instance" not in wanted_labels("requests per instance")


def test_labelled_results_move_up_but_never_past_a_name_match() -> None:
    results = [("exact_name", 1.0, set()), ("plain", 0.8, set()), ("labelled", 0.7, {"code"}), ("other", 0.7, set())]
    order = prefer_labelled(results, lambda r: r[1], lambda r: r[2], {"code"}, weight=0.2)
    assert [r[0] for r, _, _ in order] == ["exact_name", "labelled", "plain", "other"]
    assert [round(score, 2) for _, score, _ in order] == [1.0, 0.9, 0.8, 0.7] and order[1][2] == {"code"}
    assert [r[0] for r, _, _ in prefer_labelled(results, lambda r: r[1], lambda r: r[2], set())] == [
        "exact_name", "plain", "labelled", "other"
    ]  # fmt: skip


def test_every_demo_namespace_has_labels_and_hints_offline() -> None:
    """The bundled series snapshot (scripts/make-demo-series.sh) covers every metric of the bundled metadata."""
    prometheus = PrometheusResource()
    for namespace in prometheus.registry().sources:
        raw = prometheus.fetch(namespace)
        fetched = prometheus.fetch_labels(namespace, raw)
        assert set(fetched.schemas) == set(raw["metric_name"]), namespace
        assert {"job", "instance"} <= set(fetched.schemas[raw["metric_name"][0]].labels)
        assert [syntax_error(hint) for hint in hints_for(with_labels(raw, fetched.schemas))] == [None] * len(raw)


def test_labels_whose_values_are_all_known_are_written_for_the_embedding() -> None:
    labels = {
        "action": LabelSummary(3, ("add_header", "greylist", "reject"), complete=True),
        "instance": LabelSummary(1, ("rspamd:11334",), complete=True),  # on every series
        "le": LabelSummary(3, ("0.1", "1", "+Inf"), complete=True),  # structural
        "code": LabelSummary(2, ("200", "404"), complete=True),  # no letter: says nothing a question asks
        "peer": LabelSummary(400, ("a", "b"), complete=False),  # a sample only
        "worker_type": LabelSummary(2, ("normal", "controller"), complete=True),
    }
    assert label_values_text(labels) == "by action: add header, greylist, reject; by worker type: normal, controller"
    assert label_values_text({}) == ""


def test_the_enriched_frame_takes_each_metrics_label_columns_from_the_raw_schemas() -> None:
    schema = LabelSchema({"job": LabelSummary(1, ("x",), True), "action": LabelSummary(1, ("reject",), True)}, 1, 1)
    raw = pd.DataFrame({"metric_name": ["a_total", "b_total"], "labels": [schema.to_json(), None]})
    enriched = pd.DataFrame({"metric_name": ["a_total", "b_total"], "description": ["A.", "B."]})
    frame = with_label_columns(enriched, raw)
    assert frame["label_names"].tolist() == ["action", ""]
    assert frame["label_values"].tolist() == ["by action: reject", ""]
    unlabelled = with_label_columns(enriched, raw.drop(columns="labels"))
    assert unlabelled[["label_names", "label_values"]].values.tolist() == [["", ""], ["", ""]]
