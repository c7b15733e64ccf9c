"""PromQL validation on a live Prometheus: a corpus of expressions (valid, wrong metric, wrong label, wrong value,
syntax errors) checked against the name set and label schemas its own metrics and node-exporter's give, each verdict
also compared with what Prometheus itself says of the expression."""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path

import pandas as pd
import pytest
import redis

from metrics_index import cli
from metrics_index.namespaces import Namespace, NamespaceSource
from metrics_index.promql import hints_for, query_hint, syntax_error, validate_query
from metrics_index.sources.labels import LabelSchema, fetch_label_schemas, series_name_schemas, summarize, with_labels
from metrics_index.sources.prometheus import PrometheusApi, fetch_raw_metadata
from metrics_index.stores.name_set import NameSetCatalog, promql_names, replace_names
from metrics_index.testing.servers import PrometheusStack, http_get

NAMESPACE = "live:both"
SELECTOR = '{job=~"prometheus|node"}'
OK = ()

# (expression, the kinds of problem expected in order, the text each problem points at, the first suggestion)
CORPUS: list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = [
    ("up", OK, (), ()),
    ("node_cpu_seconds_total", OK, (), ()),
    ('rate(node_cpu_seconds_total{mode="idle"}[5m])', OK, (), ()),
    ("sum by (mode) (rate(node_cpu_seconds_total[5m]))", OK, (), ()),
    ("histogram_quantile(0.99, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[5m])))", OK, (), ()),
    ('go_gc_duration_seconds{quantile="0.5"}', OK, (), ()),
    ("rate(go_gc_duration_seconds_sum[5m]) / rate(go_gc_duration_seconds_count[5m])", OK, (), ()),
    ('node_filesystem_avail_bytes{fstype!="tmpfs"} / node_filesystem_size_bytes', OK, (), ()),
    ('up{job="node"} == 1', OK, (), ()),
    ('prometheus_http_requests_total{handler=~"/api/.*", code="200"}', OK, (), ()),
    ('{__name__="process_open_fds", job="prometheus"}', OK, (), ()),
    ("up * on (job, instance) group_left (version) prometheus_build_info", OK, (), ()),
    ("node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes", OK, (), ()),
    ('process_resident_memory_bytes{job="prometheus"} offset 1m', OK, (), ()),
    ("max_over_time(process_open_fds[10m:1m])", OK, (), ()),
    ('sum without (device) (rate(node_network_receive_bytes_total{device!="lo"}[5m]))', OK, (), ()),
    ('count(process_open_fds{no_such_label=""})', OK, (), ()),
    ("node_cpu_second_total", ("unknown_metric",), ("node_cpu_second_total",), ("node_cpu_seconds_total",)),
    ("rate(http_requests_total[5m])", ("unknown_metric",), ("http_requests_total",), ()),
    (
        "sum(rate(prometheus_http_request_total[5m]))",
        ("unknown_metric",),
        ("prometheus_http_request_total",),
        ("prometheus_http_requests_total",),
    ),
    (
        "node_memory_MemAvailable / node_memory_MemTotal_bytes",
        ("unknown_metric",),
        ("node_memory_MemAvailable",),
        ("node_memory_MemAvailable_bytes",),
    ),
    (
        '{__name__="node_cpu_second_total", mode="idle"}',
        ("unknown_metric",),
        ('"node_cpu_second_total"',),
        ("node_cpu_seconds_total",),
    ),
    ('prometheus_http_requests_total{status="200"}', ("unknown_label",), ("status",), ("code",)),
    ('node_cpu_seconds_total{mod="idle"}', ("unknown_label",), ("mod",), ("mode",)),
    ('rate(node_network_receive_bytes_total{interface="eth0"}[5m])', ("unknown_label",), ("interface",), ("device",)),
    ('prometheus_http_request_duration_seconds_sum{le="0.1"}', ("unknown_label",), ("le",), ()),
    ('go_gc_duration_seconds_count{quantile="0.5"}', ("unknown_label",), ("quantile",), ()),
    ('sum(rate(node_cpu_seconds_total{cpu="0", core="1"}[5m]))', ("unknown_label",), ("core",), ("cpu",)),
    ('node_cpu_seconds_total{mode="idel"}', ("unknown_value",), ('"idel"',), ("idle",)),
    ('process_cpu_seconds_total{job="prometheu"}', ("unknown_value",), ('"prometheu"',), ("prometheus",)),
    ('go_gc_duration_seconds{quantile="0.99"}', ("unknown_value",), ('"0.99"',), ()),
    ('prometheus_http_requests_total{code="2000"}', ("unknown_value",), ('"2000"',), ("200",)),
    (
        'sum(rate(node_cpu_seconds_total{mode="idle"}[5m])) / sum(rate(node_cpu_second_total{mod="user"}[5m]))',
        ("unknown_metric",),
        ("node_cpu_second_total",),
        ("node_cpu_seconds_total",),
    ),
    (
        'rate(node_cpu_seconds_total{mode="idel", status="x"}[5m]) + up',
        ("unknown_value", "unknown_label"),
        ('"idel"', "status"),
        ("idle",),
    ),
    ("rate(node_cpu_seconds_total[5m]", ("syntax",), ("(",), ()),
    ("sum by (mode (rate(node_cpu_seconds_total[5m]))", ("syntax",), (), ()),
    ('node_cpu_seconds_total{mode="idle"', ("syntax",), ("{",), ()),
    ("rate(node_cpu_seconds_total)", ("syntax",), (), ()),
    ("no_such_function(up)", ("syntax",), (), ()),
    ('up{job=~"("}', ("syntax",), (), ()),
    ("", ("syntax",), (), ()),
]


@pytest.fixture(scope="module")
def live_raw(prometheus_stack: PrometheusStack) -> pd.DataFrame:
    """Both jobs of the test Prometheus as the raw asset gives them: metadata and label schemas."""
    source = NamespaceSource(Namespace("live", "both"), SELECTOR, prometheus_url=prometheus_stack.url)
    raw = fetch_raw_metadata(source)
    return with_labels(raw, fetch_label_schemas(PrometheusApi(prometheus_stack.url), SELECTOR, raw).schemas)


@pytest.fixture(scope="module")
def live_names(live_raw: pd.DataFrame) -> tuple[set[str], dict[str, str]]:
    """The names and label schemas as the name-set asset stores them."""
    return promql_names(live_raw), {name: schema.to_json() for name, schema in series_name_schemas(live_raw).items()}


@pytest.fixture
def catalog(live_names: tuple[set[str], dict[str, str]], redis_client: redis.Redis) -> NameSetCatalog:
    replace_names(redis_client, NAMESPACE, *live_names)
    return NameSetCatalog(redis_client, NAMESPACE)


def prometheus_query(url: str, expression: str) -> tuple[int, dict]:
    status, body = http_get(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expression})}")
    return status, json.loads(body)


def prometheus_accepts(url: str, expression: str) -> bool:
    status, body = prometheus_query(url, expression)
    assert status in (200, 400), body
    return status == 200


def test_the_corpus_is_large_and_covers_every_verdict() -> None:
    kinds = {kind for _, expected, _, _ in CORPUS for kind in expected or ("valid",)}
    assert len(CORPUS) >= 30 and kinds == {"valid", "unknown_metric", "unknown_label", "unknown_value", "syntax"}


@pytest.mark.parametrize(("expression", "kinds", "at", "suggestion"), CORPUS, ids=[c[0] or "empty" for c in CORPUS])
def test_each_expression_gets_the_right_verdict(
    catalog: NameSetCatalog,
    prometheus_stack: PrometheusStack,
    expression: str,
    kinds: tuple[str, ...],
    at: tuple[str, ...],
    suggestion: tuple[str, ...],
) -> None:
    checked = validate_query(expression, catalog, NAMESPACE)
    assert tuple(p.kind for p in checked.problems) == kinds, checked.problems
    # Prometheus itself refuses exactly the syntax errors; the other mistakes run and silently return nothing.
    assert prometheus_accepts(prometheus_stack.url, expression) == (kinds != ("syntax",))
    for problem, text in zip(checked.problems, at, strict=False):
        assert problem.offset is not None and expression[problem.offset :].startswith(text), problem
        if problem.kind != "syntax":
            assert f"`{text.strip(chr(34))}`" in problem.message
    if suggestion:
        assert checked.problems[0].suggestions[0] == suggestion[0]
        assert f"did you mean `{suggestion[0]}`" in checked.problems[0].message


def test_the_message_names_the_label_and_the_metric(catalog: NameSetCatalog) -> None:
    checked = validate_query('prometheus_http_requests_total{status="200"}', catalog, NAMESPACE)
    assert checked.problems[0].message == (
        "`status` is not a label of `prometheus_http_requests_total`; did you mean `code`?"
    )
    assert checked.as_dict()["problems"][0]["position"] == {"offset": 31, "line": 1, "column": 32}
    no_match = validate_query('node_load1{zzz="1"}', catalog, NAMESPACE).problems[0]
    assert no_match.suggestions == () and "its labels: `instance`, `job`" in no_match.message


def test_a_metric_without_a_schema_is_checked_by_name_only(catalog: NameSetCatalog) -> None:
    checked = validate_query('up{anything="x"}', catalog, NAMESPACE)
    assert checked.valid and "were not checked" in checked.notes[0]


def test_validate_command_takes_promql_and_still_takes_bare_names(
    catalog: NameSetCatalog, redis_server: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    os.environ["METRICS_INDEX_HOME"] = str(tmp_path)
    base = ["validate", NAMESPACE, "--redis-url", redis_server]
    assert cli.main([*base, 'rate(node_cpu_seconds_total{mod="idle"}[5m])']) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[:4] == [
        'INVALID rate(node_cpu_seconds_total{mod="idle"}[5m])',
        "  1:29: `mod` is not a label of `node_cpu_seconds_total`; did you mean `mode`?",
        '    rate(node_cpu_seconds_total{mod="idle"}[5m])',
        "                                ^",
    ]
    assert cli.main([*base, "rate(up[5m]", "--json"]) == 1
    answer = json.loads(capsys.readouterr().out)[0]
    assert answer["problems"][0]["kind"] == "syntax" and answer["problems"][0]["message"].startswith("syntax error")
    assert cli.main([*base, 'sum by (mode) (rate(node_cpu_seconds_total{mode="idle"}[5m]))']) == 0
    assert capsys.readouterr().out.startswith("valid ")
    assert cli.main([*base, "node_cpu_seconds_total", "node_cpu_second_total"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "known   node_cpu_seconds_total"
    assert lines[1].startswith("UNKNOWN node_cpu_second_total (did you mean: node_cpu_seconds_total")


def test_hints_follow_the_type_unit_and_labels() -> None:
    codes = summarize([{"__name__": "x", "code": c, "handler": h} for c in ("200", "500") for h in ("/a", "/b", "/c")])
    assert query_hint("http_requests_total", "counter", "", codes) == "sum by (code) (rate(http_requests_total[5m]))"
    assert query_hint("http_requests_total", "counter", "", None) == "rate(http_requests_total[5m])"
    assert query_hint("rpc_seconds", "histogram", "seconds", None) == (
        "histogram_quantile(0.99, sum by (le) (rate(rpc_seconds_bucket[5m])))"
    )
    quantiles = summarize([{"__name__": "gc", "quantile": q} for q in ("0", "0.5", "0.75", "1")])
    assert query_hint("gc_seconds", "summary", "", quantiles) == 'gc_seconds{quantile="0.75"}'
    assert query_hint("gc_seconds", "summary", "", None) == "rate(gc_seconds_sum[5m]) / rate(gc_seconds_count[5m])"
    assert query_hint("node_load1", "gauge", "", None) == "node_load1"
    assert query_hint("node_boot_time_seconds", "gauge", "", None) == "time() - node_boot_time_seconds"
    one_per_target = summarize([{"job": "a", "instance": "i", "version": "1", "revision": "r"}])
    assert query_hint("build_info", "gauge", "", one_per_target) == (
        "up * on (job, instance) group_left (version, revision) build_info"
    )
    per_device = summarize([{"job": "a", "instance": "i", "device": d} for d in ("eth0", "lo")])
    assert query_hint("node_network_info", "gauge", "", per_device) == "node_network_info"


def test_every_hint_of_the_live_metrics_parses_and_runs(live_raw: pd.DataFrame, prometheus_stack: PrometheusStack):
    hints = dict(zip(live_raw["metric_name"], hints_for(live_raw), strict=True))
    assert len(hints) > 300
    kinds = {"rate(": 0, "histogram_quantile(": 0, "quantile=": 0, "group_left": 0, "time() -": 0}
    for name, hint in hints.items():
        assert syntax_error(hint) is None, (name, hint)
        status, body = prometheus_query(prometheus_stack.url, hint)
        assert (status, body["status"], body.get("warnings")) == (200, "success", None), (name, hint, body)
        for start in kinds:
            kinds[start] += start in hint
    assert all(kinds.values()), kinds
    assert hints["prometheus_build_info"].startswith("up * on (job, instance) group_left (version")
    assert prometheus_query(prometheus_stack.url, hints["prometheus_build_info"])[1]["data"]["result"]
    assert LabelSchema.from_json(live_raw.set_index("metric_name").loc["go_gc_duration_seconds", "labels"])
