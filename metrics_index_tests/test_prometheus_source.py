"""Raw metadata from a live Prometheus (target and series selectors), from snapshots, and the errors of a broken one."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from metrics_index.namespaces import Namespace, NamespaceError, NamespaceSource
from metrics_index.resources import PrometheusResource
from metrics_index.sources import SourceError
from metrics_index.sources.base import RAW_COLUMNS, RAW_FRAME_COLUMNS
from metrics_index.sources.prometheus import RequestLimits, fetch_raw_metadata, merge_entries, select_metrics
from metrics_index.testing.servers import PrometheusStack, ScriptedHTTPServer, free_port

HISTOGRAM = "prometheus_http_request_duration_seconds"  # a histogram the prometheus job always exposes
SUMMARY = "go_gc_duration_seconds"  # a summary every Go exporter exposes
SCRAPE_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}


def live_source(url: str, job: str, kind: str = "target") -> NamespaceSource:
    return NamespaceSource(Namespace("test", job), selector=f'{{job="{job}"}}', selector_kind=kind, prometheus_url=url)


def snapshot_source(path: Path, selector: str = '{job="node"}') -> NamespaceSource:
    return NamespaceSource(Namespace("test", "snapshot"), selector=selector, snapshot=path)


def write_json(path: Path, body: object) -> Path:
    path.write_text(json.dumps(body))
    return path


def target_entry(metric: str, job: str = "node", type_: str = "gauge", help_: str = "", unit: str = "", **labels):
    return {"target": {"job": job, **labels}, "metric": metric, "type": type_, "help": help_, "unit": unit}


def assert_raw_frame(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(RAW_FRAME_COLUMNS)
    assert frame["metric_name"].is_unique
    assert list(frame["metric_name"]) == sorted(frame["metric_name"])


def test_target_selector_gives_exactly_the_jobs_metadata(prometheus_stack: PrometheusStack) -> None:
    frame = fetch_raw_metadata(live_source(prometheus_stack.url, "node"))
    assert_raw_frame(frame)
    expected = {entry["metric"]: entry for entry in prometheus_stack.target_metadata("node")}
    assert set(frame["metric_name"]) == set(expected)
    cpu = frame.set_index("metric_name").loc["node_cpu_seconds_total"]
    assert (cpu["type"], cpu["help"]) == ("counter", expected["node_cpu_seconds_total"]["help"])
    assert not frame["metric_name"].str.startswith("prometheus_").any()


def test_series_selector_folds_histogram_and_summary_series_into_their_family(
    prometheus_stack: PrometheusStack,
) -> None:
    frame = fetch_raw_metadata(live_source(prometheus_stack.url, "prometheus", kind="series"))
    assert_raw_frame(frame)
    names = set(frame["metric_name"])
    assert {HISTOGRAM, SUMMARY, "prometheus_tsdb_head_series"} <= names
    for family in (HISTOGRAM, SUMMARY):
        assert not {family + suffix for suffix in ("_bucket", "_sum", "_count")} & names
    types = frame.set_index("metric_name")["type"]
    assert (types[HISTOGRAM], types[SUMMARY]) == ("histogram", "summary")
    assert not any(name.startswith("node_") for name in names), "the series selector leaked another job's metrics"


def test_series_and_target_selectors_agree_on_a_job(prometheus_stack: PrometheusStack) -> None:
    by_target = fetch_raw_metadata(live_source(prometheus_stack.url, "node"))
    by_series = fetch_raw_metadata(live_source(prometheus_stack.url, "node", kind="series"))
    # Prometheus adds `up` and `scrape_*` series to every target; they have no metadata of their own, so the
    # source describes them itself.
    synthetic = by_series[~by_series["metric_name"].isin(by_target["metric_name"])]
    assert set(synthetic["metric_name"]) == SCRAPE_SERIES
    assert set(synthetic["type"]) == {"gauge"} and synthetic["help"].str.len().min() > 0
    # A family with no current series (e.g. an error counter never incremented) has metadata but no series.
    assert len(by_series) > 0.8 * len(by_target)


def test_resource_uses_the_default_prometheus_and_job_selector_for_an_unregistered_namespace(
    prometheus_stack: PrometheusStack, tmp_path: Path
) -> None:
    registry = tmp_path / "namespaces.yaml"
    registry.write_text("namespaces: {}\n")
    resource = PrometheusResource(registry_path=str(registry), url=prometheus_stack.url)
    frame = resource.fetch("anyone:node")
    assert set(frame["metric_name"]) == {entry["metric"] for entry in prometheus_stack.target_metadata("node")}
    with pytest.raises(NamespaceError, match="lower-case"):
        resource.fetch("Anyone:node")


def test_selector_rejected_by_prometheus_is_reported_with_its_answer(prometheus_stack: PrometheusStack) -> None:
    source = NamespaceSource(Namespace("test", "node"), selector="{job=node}", prometheus_url=prometheus_stack.url)
    with pytest.raises(SourceError, match="HTTP 400") as raised:
        fetch_raw_metadata(source)
    assert "parse error" in str(raised.value)


def test_snapshot_source_filters_the_targets_response_by_selector() -> None:
    bundled = Path(__file__).parents[1] / "metrics_index" / "data" / "demo-targets-metadata.json"
    entries = json.loads(bundled.read_text())["data"]
    for job in ("node", "redis"):
        frame = fetch_raw_metadata(snapshot_source(bundled, f'{{job="{job}"}}'))
        assert_raw_frame(frame)
        assert set(frame["metric_name"]) == {e["metric"] for e in entries if e["target"]["job"] == job}


def test_snapshot_selector_supports_the_promql_matchers(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "targets.json",
        {
            "status": "success",
            "data": [
                target_entry("a_total", job="api", env="prod"),
                target_entry("b_total", job="api", env="staging"),
                target_entry("c_total", job="web", env="prod"),
            ],
        },
    )

    def names(selector: str) -> list[str]:
        return list(fetch_raw_metadata(snapshot_source(path, selector))["metric_name"])

    assert names('{job="api"}') == ["a_total", "b_total"]
    assert names('{job="api", env!="prod"}') == ["b_total"]
    assert names('{env=~"pro.*"}') == ["a_total", "c_total"]
    assert names('{env=~"pro"}') == [], "regular expressions are anchored, as in PromQL"
    assert names('{job!~"a.*"}') == ["c_total"]
    with pytest.raises(SourceError, match="selector"):
        names("job=api")
    with pytest.raises(SourceError, match="cannot be parsed"):
        names("{job=api}")


def test_snapshot_selector_matches_non_ascii_label_values(tmp_path: Path) -> None:
    path = write_json(tmp_path / "targets.json", {"status": "success", "data": [target_entry("a_total", job="café")]})
    assert list(fetch_raw_metadata(snapshot_source(path, '{job="café"}'))["metric_name"]) == ["a_total"]


def test_snapshot_in_the_metadata_format_is_read_whole(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "metadata.json",
        {
            "status": "success",
            "data": {
                "up": [{"type": "gauge", "help": "Whether the target is up.", "unit": ""}],
                "http_request_duration_seconds": [{"type": "histogram", "help": "Latency.", "unit": "seconds"}],
            },
        },
    )
    frame = fetch_raw_metadata(snapshot_source(path))
    assert frame[list(RAW_COLUMNS)].to_dict("records") == [
        {"metric_name": "http_request_duration_seconds", "type": "histogram", "help": "Latency.", "unit": "seconds"},
        {"metric_name": "up", "type": "gauge", "help": "Whether the target is up.", "unit": ""},
    ]


def test_several_entries_for_one_name_merge_the_same_way_in_any_order() -> None:
    entries = [
        target_entry("queue_length", instance="a", help_="Items waiting."),
        target_entry("queue_length", instance="b", help_="Items waiting."),
        target_entry("queue_length", instance="c", help_="Items waiting in the queue.", type_="unknown"),
        target_entry("requests_total", instance="a", type_="unknown", help_="Requests."),
        target_entry("requests_total", instance="b", type_="counter", help_="Requests served."),
    ]
    expected = merge_entries(entries)
    for seed in range(5):
        shuffled = entries[:]
        random.Random(seed).shuffle(shuffled)
        pd.testing.assert_frame_equal(merge_entries(shuffled), expected)
    rows = expected.set_index("metric_name")
    # The most common help wins; a declared type beats `unknown`; on a tie the longer help wins.
    assert tuple(rows.loc["queue_length", ["type", "help"]]) == ("gauge", "Items waiting.")
    assert tuple(rows.loc["requests_total", ["type", "help"]]) == ("counter", "Requests served.")


def test_entry_without_a_metric_name_is_rejected() -> None:
    with pytest.raises(SourceError, match="entry 0: metric: Field required"):
        merge_entries([{"type": "gauge", "help": "nameless"}])


def test_select_metrics_excludes_then_limits() -> None:
    frame = merge_entries([target_entry(name) for name in ("go_a", "node_a", "node_b", "node_c")])
    assert list(select_metrics(frame, exclude="^go_")["metric_name"]) == ["node_a", "node_b", "node_c"]
    assert list(select_metrics(frame, limit=2, exclude="^go_")["metric_name"]) == ["node_a", "node_b"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("not json {", "is not JSON"),
        ('{"status": "error", "error": "bad"}', "reported an error: bad"),
        ('{"status": "success", "data": "nope"}', "neither a list nor an object"),
    ],
)
def test_broken_snapshot_is_a_clear_error(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "snapshot.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SourceError, match=expected) as raised:
        fetch_raw_metadata(snapshot_source(path))
    assert str(path) in str(raised.value)


def test_prometheus_down_is_reported_as_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SourceError, match="unreachable") as raised:
        fetch_raw_metadata(live_source(url, "node"), limits=RequestLimits(timeout_seconds=2))
    assert url in str(raised.value)


def test_no_prometheus_configured_is_a_clear_error() -> None:
    source = NamespaceSource(Namespace("test", "node"), selector='{job="node"}')
    with pytest.raises(SourceError, match="no Prometheus URL"):
        fetch_raw_metadata(source)


def test_unhealthy_prometheus_fails_before_any_api_call(http_stub: ScriptedHTTPServer) -> None:
    http_stub.answer("/-/healthy", status=503, body="Service Unavailable", content_type="text/plain")
    with pytest.raises(SourceError, match=r"not healthy.*503") as raised:
        fetch_raw_metadata(live_source(http_stub.url, "node"))
    assert http_stub.url in str(raised.value)
    assert not [path for path in http_stub.requests if path.startswith("/api/")]


API_FAILURES = [
    pytest.param(500, "internal failure: storage is on fire", "text/plain", "HTTP 500.*storage is on fire", id="500"),
    pytest.param(200, "<html><body>Welcome to nginx!</body></html>", "text/html", "did not answer JSON", id="html"),
    pytest.param(200, "[1, 2, 3]", "application/json", "not a JSON object", id="json-list"),
    pytest.param(200, '{"data": []}', "application/json", "status is None", id="no-status"),
    pytest.param(200, '{"status": "error", "errorType": "bad_data", "error": "no"}', "application/json",
                 "reported an error: no", id="api-error"),
    pytest.param(200, '{"status": "success"}', "application/json", "has no 'data'", id="no-data"),
    pytest.param(200, '{"status": "success", "data": {"a": 1}}', "application/json", "'data' is not a list",
                 id="wrong-data"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "content_type", "expected"), API_FAILURES)
def test_target_metadata_failures_give_clear_errors(
    http_stub: ScriptedHTTPServer, status: int, body: str, content_type: str, expected: str
) -> None:
    http_stub.answer_healthy()
    http_stub.answer("/api/v1/targets/metadata", status=status, body=body, content_type=content_type)
    with pytest.raises(SourceError, match=expected) as raised:
        fetch_raw_metadata(live_source(http_stub.url, "node"))
    assert "/api/v1/targets/metadata" in str(raised.value)


@pytest.mark.parametrize(
    ("broken_path", "good_path", "good_data"),
    [
        ("/api/v1/label/__name__/values", "/api/v1/metadata", {}),
        ("/api/v1/metadata", "/api/v1/label/__name__/values", ["up"]),
    ],
)
def test_series_selector_failures_name_the_endpoint(
    http_stub: ScriptedHTTPServer, broken_path: str, good_path: str, good_data: object
) -> None:
    http_stub.answer_healthy()
    http_stub.answer(good_path, body={"status": "success", "data": good_data})
    http_stub.answer(broken_path, body={"status": "success", "data": 42})
    with pytest.raises(SourceError, match="unexpected answer") as raised:
        fetch_raw_metadata(live_source(http_stub.url, "node", kind="series"))
    assert broken_path in str(raised.value)


def test_series_selector_is_sent_as_match_and_joined_with_metadata(http_stub: ScriptedHTTPServer) -> None:
    http_stub.answer_healthy()
    http_stub.answer(
        "/api/v1/label/__name__/values",
        body={"status": "success", "data": ["rpc_seconds_bucket", "rpc_seconds_count", "rpc_seconds_sum", "odd_count"]},
    )
    http_stub.answer(
        "/api/v1/metadata",
        body={"status": "success", "data": {"rpc_seconds": [{"type": "histogram", "help": "RPC time.", "unit": ""}]}},
    )
    frame = fetch_raw_metadata(live_source(http_stub.url, "orders", kind="series"))
    assert frame.to_dict("records") == [
        {"metric_name": "odd_count", "type": "unknown", "help": "", "unit": "", "conflicting_types": ""},
        {"metric_name": "rpc_seconds", "type": "histogram", "help": "RPC time.", "unit": "", "conflicting_types": ""},
    ]
    assert any("match%5B%5D=%7Bjob%3D%22orders%22%7D" in path for path in http_stub.requests)
