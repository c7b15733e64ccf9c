"""The fault suite: hostile and broken inputs, done for real (a trickling Prometheus on loopback, oversized and
malformed answers, corrupt files, a read-only folder), each run asserting a clear error and that the stores still
agree afterwards with nothing lost."""

from __future__ import annotations

import gzip
import time

import pytest

from metrics_index.api import materialization_metadata
from metrics_index.sources import SourceError
from metrics_index.sources.prometheus import RequestLimits, fetch_raw_metadata, merge_entries
from metrics_index_tests.project import Project, step_failures, target_entry
from metrics_index_tests.servers import ScriptedHTTPServer
from metrics_index_tests.test_prometheus_source import live_source

TARGETS = "/api/v1/targets/metadata"
SERVICE_METRICS = [target_entry(f"app_metric_{i:02d}_total", "counter", f"Things number {i}.") for i in range(50)]


def answer_targets(stub: ScriptedHTTPServer, entries: object, **kwargs: object) -> None:
    stub.answer_healthy()
    stub.answer(TARGETS, body={"status": "success", "data": entries}, **kwargs)


def fetch_app(stub: ScriptedHTTPServer, **limits: object) -> object:
    return fetch_raw_metadata(live_source(stub.url, "app"), limits=RequestLimits(**limits))


def store_state(project: Project, namespace: str) -> tuple[set[str], set[str], list[str]]:
    """What each store holds for a namespace: Redis names, Chroma documents, raw Parquet names."""
    documents = set(project.index().documents(namespace)["metric_name"])
    return project.names(namespace), documents, list(project.catalog("raw_metric_metadata", namespace)["metric_name"])


def assert_stores_agree(project: Project, namespace: str, metrics: set[str]) -> None:
    names, documents, raw = store_state(project, namespace)
    assert set(raw) == documents == metrics
    assert metrics <= names


# --- Prometheus answers are bounded --------------------------------------------------------------------------------


def test_a_trickling_prometheus_is_cut_off_at_the_deadline_of_the_whole_request(http_stub: ScriptedHTTPServer) -> None:
    """One byte every 50 ms would take about 20 s for this answer; a 1 s deadline must end it, not each read."""
    answer_targets(http_stub, [target_entry("a_total", "counter", "A" * 300)], seconds_per_byte=0.05)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"did not give a whole answer within 1 s \(a deadline for the whole"):
        fetch_app(http_stub, timeout_seconds=1)
    assert time.monotonic() - started < 10, "the deadline bounds the request, the trickle must not hold it"


def test_an_answer_larger_than_the_cap_is_refused(http_stub: ScriptedHTTPServer) -> None:
    answer_targets(http_stub, [target_entry(f"m_{i}", help_="x" * 100) for i in range(100)])
    with pytest.raises(SourceError, match=r"announces [\d,]+ bytes; the limit is 5,000 bytes"):
        fetch_app(http_stub, max_bytes=5_000)


def test_a_compressed_answer_is_capped_by_its_decoded_size(http_stub: ScriptedHTTPServer) -> None:
    """A gzip bomb: 5 MB of JSON in a few kilobytes on the wire."""
    bomb = gzip.compress(b'{"status": "success", "data": [' + b" " * 5_000_000 + b"]}")
    http_stub.answer_healthy()
    http_stub.answer(TARGETS, body=bomb, headers=(("Content-Encoding", "gzip"),))
    with pytest.raises(SourceError, match=r"is larger than that .*the limit is 1,000,000 bytes"):
        fetch_app(http_stub, max_bytes=1_000_000)
    assert len(fetch_app(http_stub, max_bytes=10_000_000)) == 0  # the same answer under a larger cap is read


def test_a_redirect_to_another_host_is_refused_unless_allowed(http_stub: ScriptedHTTPServer) -> None:
    other_host = http_stub.url.replace("127.0.0.1", "localhost")
    http_stub.answer_healthy()
    http_stub.answer(TARGETS, status=302, headers=(("Location", f"{other_host}/moved"),))
    http_stub.answer("/moved", body={"status": "success", "data": [target_entry("other_server_total")]})
    with pytest.raises(SourceError, match=r"redirected to another host .*refused"):
        fetch_app(http_stub)
    assert list(fetch_app(http_stub, redirects_to_other_hosts=True)["metric_name"]) == ["other_server_total"]


def test_a_redirect_on_the_same_host_is_followed(http_stub: ScriptedHTTPServer) -> None:
    http_stub.answer_healthy()
    http_stub.answer(TARGETS, status=301, headers=(("Location", "/prometheus/api/v1/targets/metadata"),))
    http_stub.answer("/prometheus/api/v1/targets/metadata", body={"status": "success", "data": [target_entry("a")]})
    assert list(fetch_app(http_stub)["metric_name"]) == ["a"]


# --- every entry passes one schema ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([1, 2, 3], r"entry 0: Input should be a valid dictionary"),
        (
            [target_entry("ok_total"), {**target_entry("bad_total"), "type": ["gauge"]}],
            r"entry 1 \(metric 'bad_total'\): type: Input should be a valid string, got \['gauge'\]",
        ),
        ([{**target_entry("bad"), "help": 42}], r"entry 0 \(metric 'bad'\): help: Input should be a valid string"),
        ([{**target_entry("bad"), "type": "countr"}], r"type: Value error, 'countr' is not a Prometheus metric type"),
        ([{**target_entry(""), "metric": ""}], r"entry 0 \(metric ''\): metric: String should have at least 1"),
        ([{**target_entry("bad"), "target": {"job": 7}}], r"entry 0 \(metric 'bad'\): target.job: Input should be"),
    ],
    ids=["not-objects", "list-type", "number-help", "unknown-type", "empty-name", "number-label"],
)  # fmt: skip
def test_entries_of_the_wrong_shape_are_refused_with_the_entry_named(
    http_stub: ScriptedHTTPServer, data: list, expected: str
) -> None:
    answer_targets(http_stub, data)
    with pytest.raises(SourceError, match=expected) as raised:
        fetch_app(http_stub)
    assert "nothing was stored" in str(raised.value) and TARGETS in str(raised.value)


def test_series_metadata_of_the_wrong_shape_is_refused_with_the_metric_named(http_stub: ScriptedHTTPServer) -> None:
    http_stub.answer_healthy()
    http_stub.answer("/api/v1/label/__name__/values", body={"status": "success", "data": ["a_total", "b"]})
    http_stub.answer("/api/v1/metadata", body={"status": "success", "data": {"a_total": [{"type": 1}]}})
    with pytest.raises(SourceError, match=r"/api/v1/metadata .*metric 'a_total' entry 0: type: Input should be"):
        fetch_raw_metadata(live_source(http_stub.url, "app", kind="series"))


def test_conflicting_declared_types_are_kept_visible() -> None:
    entries = [
        target_entry("rpc_total", "counter", job="a"),
        target_entry("rpc_total", "counter", job="b"),
        target_entry("rpc_total", "histogram", job="c"),
        target_entry("queue", "gauge", job="a"),
        target_entry("queue", "unknown", job="b"),
    ]
    frame = merge_entries(entries).set_index("metric_name")
    assert (frame.loc["rpc_total", "type"], frame.loc["rpc_total", "conflicting_types"]) == (
        "counter",
        "counter,histogram",
    )
    assert frame.loc["queue", "conflicting_types"] == ""  # 'unknown' declares nothing, so it conflicts with nothing


# --- a collapse of the namespace is refused like an empty answer ---------------------------------------------------


def test_a_namespace_that_collapses_is_refused_and_loses_nothing(project: Project) -> None:
    project.register("acme:app", snapshot=project.write_snapshot("app.json", SERVICE_METRICS), selector='{job="app"}')
    assert project.materialize("acme:app").success
    everything = {e["metric"] for e in SERVICE_METRICS}
    assert_stores_agree(project, "acme:app", everything)

    project.write_snapshot("app.json", [{**SERVICE_METRICS[0], "type": ["gauge"]}])  # 1 malformed entry of 50
    result = project.materialize("acme:app")
    assert "invalid metadata field" in step_failures(result)["raw_metric_metadata"]
    assert_stores_agree(project, "acme:app", everything)

    project.write_snapshot("app.json", SERVICE_METRICS[:20])  # 60% gone at once
    result = project.materialize("acme:app")
    failure = step_failures(result)["raw_metric_metadata"]
    assert "would shrink from 50 to 20 metrics (60% lost, more than the 50% allowed)" in failure
    assert materialization_metadata(result) == {}
    assert_stores_agree(project, "acme:app", everything)

    project.write_snapshot("app.json", SERVICE_METRICS[:30])  # 40% gone: within the default share
    assert project.materialize("acme:app").success
    allowed = project.materialize(
        "acme:app", run_config={"ops": {"raw_metric_metadata": {"config": {"allow_shrink": True}}}}
    )
    assert allowed.success
    assert_stores_agree(project, "acme:app", {e["metric"] for e in SERVICE_METRICS[:30]})


def test_conflicting_types_are_reported_in_the_metadata(project: Project) -> None:
    entries = [*SERVICE_METRICS[:3], target_entry("app_metric_00_total", "gauge", job="app")]
    project.register("acme:app", snapshot=project.write_snapshot("app.json", entries), selector='{job="app"}')
    result = project.materialize("acme:app")
    assert result.success
    raw = materialization_metadata(result)["raw_metric_metadata"]
    assert raw["conflicting_types"] == {"app_metric_00_total": "counter,gauge"}
