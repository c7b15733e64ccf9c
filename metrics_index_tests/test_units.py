"""The unit a metric really has: declared, else from its name, else an enricher's answer, else its help text."""

from __future__ import annotations

import pytest

from metrics_index.units import UNITS, help_unit, unit_of


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("http_server_request_duration_seconds", "seconds"),
        ("http_server_request_duration_seconds_bucket", "seconds"),
        ("node_cpu_seconds_total", "seconds"),
        ("redis_rdb_last_save_timestamp_seconds", "seconds since the Unix epoch"),
        ("mysql_query_response_time_ms", "milliseconds"),
        ("node_memory_MemFree_bytes", "bytes"),
        ("go_memstats_alloc_bytes_total", "bytes"),
        ("node_network_receive_bits_total", "bits"),
        ("cache_hit_ratio", "ratio"),
        ("node_hwmon_temp_celsius", "degrees Celsius"),
        ("node_cpu_scaling_frequency_hertz", "hertz"),
        ("http_requests_total", ""),
        ("node_load5", ""),
        ("redis_connected_clients", ""),
        ("node_uname_info", ""),
    ],
)
def test_the_name_says_the_unit(name: str, unit: str) -> None:
    assert unit_of(name) == unit


def test_a_declared_unit_wins_and_is_spelled_as_stored() -> None:
    assert unit_of("x_duration_seconds", "bytes") == "bytes"
    assert unit_of("disk_temp", "celsius") == "degrees Celsius"
    assert unit_of("x_things", "widgets") == "widgets"
    assert unit_of("x_last_seen_timestamp_seconds", "seconds") == "seconds since the Unix epoch"  # sharpened


def test_the_help_text_names_a_unit_only_when_nothing_else_does() -> None:
    assert help_unit("Uptime of the protocol in seconds") == "seconds"
    assert help_unit("Histogram of responses by latency (in milliseconds)") == "milliseconds"
    assert help_unit("Average response latency in microseconds of the last 100 packets") == "microseconds"
    assert help_unit("Seconds since the last reload.") == ""
    assert help_unit("Bytes in use.") == ""
    assert unit_of("bird_protocol_uptime", help_text="Uptime of the protocol in seconds") == "seconds"
    assert unit_of("x_latency_seconds", help_text="Latency in milliseconds") == "seconds"


def test_an_answer_fills_a_gap_and_never_overrides_the_metric() -> None:
    assert unit_of("app_queue_wait", answered="milliseconds") == "milliseconds"
    assert unit_of("app_queue_wait", help_text="Wait in seconds", answered="milliseconds") == "milliseconds"
    assert unit_of("app_wait_seconds", answered="bytes") == "seconds"
    assert unit_of("app_wait", "seconds", answered="bytes") == "seconds"
    assert set(UNITS) >= {"seconds", "bytes", "ratio", "degrees Celsius", "seconds since the Unix epoch"}
