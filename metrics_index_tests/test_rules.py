"""The rule-based enricher on real metric names from the bundled snapshot."""

from __future__ import annotations

import pytest

from metrics_index.enrichment.incremental import enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher, enrich_metric, meter_type
from metrics_index.namespaces import DEFAULT_REGISTRY_PATH
from metrics_index.sources import RawMetric
from metrics_index.sources.prometheus import merge_entries, read_snapshot

SNAPSHOT = DEFAULT_REGISTRY_PATH.parent / "demo-targets-metadata.json"


@pytest.fixture(scope="module")
def snapshot_metrics() -> dict[str, RawMetric]:
    frame = merge_entries(read_snapshot(SNAPSHOT, "{}"))
    return {m.metric_name: m for m in RawMetric.from_frame(frame)}


@pytest.mark.parametrize(
    ("name", "category", "subcategory", "signal", "meter"),
    [
        ("node_cpu_seconds_total", "compute", "cpu", "saturation", "counter"),
        ("node_filesystem_avail_bytes", "storage", "filesystem", "saturation", "gauge"),
        ("node_memory_MemFree_bytes", "memory", "usage", "saturation", "gauge"),
        ("node_network_transmit_bytes_total", "network", "interface", "traffic", "counter"),
        ("node_network_receive_errs_total", "network", "interface", "errors", "counter"),
        ("node_disk_write_time_seconds_total", "storage", "disk_io", "latency", "counter"),
        ("node_load5", "compute", "load", "saturation", "gauge"),
        ("node_timex_estimated_error_seconds", "system", "time", "none", "gauge"),
        ("node_netstat_Tcp_InErrs", "network", "protocol", "errors", "unknown"),
        ("redis_connected_clients", "database", "connections", "saturation", "gauge"),
        ("redis_connected_slaves", "database", "replication", "saturation", "gauge"),
        ("redis_commands_processed_total", "database", "commands", "traffic", "counter"),
        ("redis_rdb_last_bgsave_duration_sec", "database", "persistence", "latency", "gauge"),
        ("redis_exporter_build_info", "service", "build_info", "none", "info"),
        ("prometheus_http_request_duration_seconds", "http", "server", "latency", "histogram"),
        ("prometheus_tsdb_wal_fsync_duration_seconds", "monitoring", "tsdb", "latency", "summary"),
        ("prometheus_sd_dns_lookup_failures_total", "monitoring", "service_discovery", "errors", "counter"),
        ("prometheus_build_info", "service", "build_info", "none", "info"),
        ("alertmanager_notifications_failed_total", "alerting", "notifications", "errors", "counter"),
        ("alertmanager_silences", "alerting", "silences", "none", "gauge"),
        ("go_gc_duration_seconds", "runtime", "garbage_collection", "latency", "summary"),
        ("go_goroutines", "runtime", "concurrency", "saturation", "gauge"),
        ("process_open_fds", "process", "file_descriptors", "saturation", "gauge"),
        ("blackbox_exporter_config_last_reload_successful", "service", "configuration", "none", "gauge"),
    ],
)
def test_snapshot_metric_is_classified_by_its_conventions(
    snapshot_metrics: dict[str, RawMetric], name: str, category: str, subcategory: str, signal: str, meter: str
) -> None:
    fields = enrich_metric(snapshot_metrics[name])
    assert (fields.category, fields.subcategory, fields.golden_signal_type, fields.meter_type) == (
        category,
        subcategory,
        signal,
        meter,
    )
    assert fields.golden_signal_description


def test_every_snapshot_metric_gets_valid_fields(snapshot_metrics: dict[str, RawMetric]) -> None:
    outcome = RulesEnricher().enrich(list(snapshot_metrics.values()))
    assert outcome.failures == {}
    assert outcome.enriched.keys() == snapshot_metrics.keys()
    assert all(f.description and f.golden_signal_description for f in outcome.enriched.values())


@pytest.mark.parametrize(
    ("suffix_name", "help_text", "prometheus_type", "signal"),
    [
        ("myapp_jobs_errors_total", "Jobs that ended in error.", "counter", "errors"),
        ("myapp_backup_failures_total", "", "counter", "errors"),
        ("myapp_build_info", "", "gauge", "none"),
        ("myapp_queue_length", "Items waiting.", "gauge", "saturation"),
        ("myapp_requests_total", "Requests served.", "counter", "traffic"),
    ],
)
def test_unknown_services_follow_the_naming_conventions(
    suffix_name: str, help_text: str, prometheus_type: str, signal: str
) -> None:
    fields = enrich_metric(RawMetric(suffix_name, prometheus_type, help_text, ""))
    assert fields.golden_signal_type == signal


def test_help_that_only_repeats_the_name_is_replaced_by_words(snapshot_metrics: dict[str, RawMetric]) -> None:
    assert snapshot_metrics["redis_connected_clients"].help == "connected_clients metric"
    description = enrich_metric(snapshot_metrics["redis_connected_clients"]).description
    assert description.startswith("Redis: connected clients")
    memfree = enrich_metric(snapshot_metrics["node_memory_MemFree_bytes"]).description
    assert "memory free" in memfree and "bytes" in memfree


def test_informative_help_is_kept_as_a_sentence(snapshot_metrics: dict[str, RawMetric]) -> None:
    assert enrich_metric(snapshot_metrics["node_load5"]).description == "5m load average."


def test_meter_type_and_unit_come_from_type_and_suffixes() -> None:
    assert meter_type("node_vmstat_pgfault_total", "unknown") == "counter"
    assert meter_type("node_uname_info", "gauge") == "info"
    assert meter_type("x_latency", "gaugehistogram") == "histogram"
    assert meter_type("x", "") == "unknown"
    assert enrich_metric(RawMetric("redis_rdb_last_save_timestamp_seconds", "gauge", "", "")).unit == (
        "seconds since the Unix epoch"
    )
    assert enrich_metric(RawMetric("go_memstats_alloc_bytes_total", "counter", "", "")).unit == "bytes"
    assert enrich_metric(RawMetric("x_things", "gauge", "", "widgets")).unit == "widgets"
    assert enrich_metric(RawMetric("bird_protocol_uptime", "gauge", "Uptime of the protocol in seconds", "")).unit == (
        "seconds"
    )
    assert enrich_metric(RawMetric("http_requests_total", "counter", "Requests served.", "")).unit == ""


def test_output_is_deterministic_and_plugs_into_incremental_enrichment(snapshot_metrics: dict[str, RawMetric]) -> None:
    raw = list(snapshot_metrics.values())
    first, report = enrich_catalog(raw, RulesEnricher(), RulesEnricher())
    second, again = enrich_catalog(raw, RulesEnricher(), RulesEnricher(), previous=first)
    assert report.enriched == len(raw) and report.failed == 0
    assert again.reused == len(raw)
    assert first.drop(columns="enriched_at").equals(second.drop(columns="enriched_at"))
    assert RulesEnricher().fingerprint.startswith("rules/")


def test_no_description_of_the_demo_snapshot_has_a_stray_letter(snapshot_metrics: dict[str, RawMetric]) -> None:
    """CamelCase kernel names become real words: `SecPageTables` is not "seconds page tables", `SReclaimable`
    not "s reclaimable", `DirectMap4k` not "direct map 4 k"."""
    stray = {}
    for name, metric in snapshot_metrics.items():
        words = enrich_metric(metric).description.replace("(", " ").replace(")", " ").split()
        letters = [w for w in (word.strip(".,:;") for word in words) if len(w) == 1 and w.isalpha() and w not in "aA"]
        if letters:
            stray[name] = letters
    assert stray == {}
    descriptions = {name: enrich_metric(snapshot_metrics[name]).description for name in snapshot_metrics}
    assert "secondary page tables" in descriptions["node_memory_SecPageTables_bytes"]
    assert "slab reclaimable" in descriptions["node_memory_SReclaimable_bytes"]
    assert "committed address space" in descriptions["node_memory_Committed_AS_bytes"]
    assert "direct map 4k" in descriptions["node_memory_DirectMap4k_bytes"]


def test_udp_lite_is_named_as_the_protocol(snapshot_metrics: dict[str, RawMetric]) -> None:
    """The kernel's UdpLite and UdpLite6 fields are UDP-Lite (RFC 3828) over IPv4 and IPv6, not "UDP lite 6"."""
    udp_lite = enrich_metric(snapshot_metrics["node_netstat_UdpLite_InErrors"]).description
    assert udp_lite.endswith(": UDP-Lite in errors (untyped).")
    udp_lite6 = enrich_metric(snapshot_metrics["node_netstat_UdpLite6_InErrors"]).description
    assert udp_lite6.endswith(": UDP-Lite over IPv6 in errors (untyped).")
    assert "UDP6 in errors" in enrich_metric(snapshot_metrics["node_netstat_Udp6_InErrors"]).description
