"""The Redis name set on a real redis-server: exact contents, atomic replacement, exact-match lookups."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
import redis

from metrics_index.stores.name_set import (
    all_names,
    close_matches,
    is_known_metric,
    known_metrics,
    names_key,
    promql_names,
    replace_names,
)
from metrics_index.testing.servers import RedisServer

NAMESPACE = "test:orders"


def raw(*rows: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame([(name, kind, "", "") for name, kind in rows], columns=["metric_name", "type", "help", "unit"])


def test_promql_names_add_the_series_of_histograms_and_summaries() -> None:
    frame = raw(("rpc_seconds", "histogram"), ("gc_seconds", "summary"), ("requests_total", "counter"), ("up", "gauge"))
    assert promql_names(frame) == {
        "rpc_seconds",
        "rpc_seconds_bucket",
        "rpc_seconds_sum",
        "rpc_seconds_count",
        "gc_seconds",
        "gc_seconds_sum",
        "gc_seconds_count",
        "requests_total",
        "up",
    }


def test_replacement_makes_the_set_exactly_the_new_names(redis_client: redis.Redis) -> None:
    assert replace_names(redis_client, NAMESPACE, ["a_total", "b_total", "c_total"]) == 3
    assert replace_names(redis_client, NAMESPACE, ["b_total", "d_total", "d_total"]) == 2
    assert redis_client.smembers(names_key(NAMESPACE)) == {"b_total", "d_total"}
    assert all_names(redis_client, NAMESPACE) == {"b_total", "d_total"}
    # The live key does not inherit the temporary key's expiry, and no temporary key is left behind.
    assert redis_client.ttl(names_key(NAMESPACE)) == -1
    assert redis_client.keys("*") == [names_key(NAMESPACE)]


def test_key_scheme_keeps_namespaces_apart(redis_client: redis.Redis) -> None:
    replace_names(redis_client, "a:orders", ["x_total"])
    replace_names(redis_client, "b:orders", ["y_total"])
    assert names_key("a:orders") == "metrics-index:a:orders:names"
    assert redis_client.smembers("metrics-index:a:orders:names") == {"x_total"}
    assert redis_client.smembers("metrics-index:b:orders:names") == {"y_total"}
    replace_names(redis_client, "a:orders", [])
    assert not redis_client.exists(names_key("a:orders"))
    assert redis_client.smembers(names_key("b:orders")) == {"y_total"}


def test_large_sets_are_replaced_in_full(redis_client: redis.Redis) -> None:
    names = [f"metric_{i:06d}_total" for i in range(25_000)]  # more than one chunk
    assert replace_names(redis_client, NAMESPACE, names) == len(names)
    assert redis_client.scard(names_key(NAMESPACE)) == len(names)
    assert redis_client.keys("*") == [names_key(NAMESPACE)]


def test_lookups_are_exact_and_case_sensitive(redis_client: redis.Redis) -> None:
    replace_names(redis_client, NAMESPACE, ["http_requests_total", "up"])
    asked = ["http_requests_total", "HTTP_REQUESTS_TOTAL", "http_requests", "up", ""]
    assert known_metrics(redis_client, NAMESPACE, asked) == {
        "http_requests_total": True,
        "HTTP_REQUESTS_TOTAL": False,
        "http_requests": False,
        "up": True,
        "": False,
    }
    assert known_metrics(redis_client, NAMESPACE, []) == {}
    assert is_known_metric(redis_client, NAMESPACE, "up")
    assert not is_known_metric(redis_client, "other:namespace", "up")


def test_lookups_work_with_a_client_that_returns_bytes(redis_server: str, redis_client: redis.Redis) -> None:
    replace_names(redis_client, NAMESPACE, ["up"])
    with redis.Redis.from_url(redis_server) as raw_client:
        assert known_metrics(raw_client, NAMESPACE, ["up", "down"]) == {"up": True, "down": False}
        assert all_names(raw_client, NAMESPACE) == {"up"}


def test_close_matches_suggest_the_intended_name() -> None:
    candidates = ["node_cpu_seconds_total", "node_memory_MemFree_bytes", "process_cpu_seconds_total"]
    assert close_matches(candidates, "node_cpu_second_total")[0] == "node_cpu_seconds_total"
    assert close_matches(candidates, "kube_pod_info") == []


def test_concurrent_reader_never_sees_an_empty_or_partial_set(redis_server: str, redis_client: redis.Redis) -> None:
    """The old indexer did DEL + SADD: readers saw an empty set during every run. Poll in a tight loop while the
    set is replaced back and forth; every observation must be one of the two complete versions."""
    old = {f"old_metric_{i}_total" for i in range(3_000)}
    new = {f"new_metric_{i}_total" for i in range(3_001)}
    replace_names(redis_client, NAMESPACE, old)
    key = names_key(NAMESPACE)
    sizes: list[int] = []
    wrong_contents: list[int] = []
    done = threading.Event()

    def read() -> None:
        with redis.Redis.from_url(redis_server, decode_responses=True) as reader:
            while not done.is_set():
                sizes.append(reader.scard(key))
                members = reader.smembers(key)
                if members != old and members != new:
                    wrong_contents.append(len(members))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        replacements = 0
        # Keep replacing until the reader has seen both versions several times (bounded, in case it cannot).
        while replacements < 40 or (min(sizes.count(len(old)), sizes.count(len(new))) < 5 and replacements < 2_000):
            replace_names(redis_client, NAMESPACE, new if replacements % 2 == 0 else old)
            replacements += 1
    finally:
        done.set()
        reader.join()
    assert set(sizes) == {len(old), len(new)}, f"sizes seen: {sorted(set(sizes))[:10]}"
    assert wrong_contents == []
    assert redis_client.keys("*") == [key]


def test_redis_gone_fails_loudly_and_the_set_survives(redis_process: RedisServer) -> None:
    with redis_process.client() as client:
        replace_names(client, NAMESPACE, ["a_total", "b_total"])
    redis_process.stop(save=True)
    with redis_process.client() as client, pytest.raises(redis.ConnectionError):
        replace_names(client, NAMESPACE, ["c_total"])
    redis_process.start()
    with redis_process.client() as client:
        assert all_names(client, NAMESPACE) == {"a_total", "b_total"}
