"""The fixtures start what they promise: the rest of the suite relies on them."""

from __future__ import annotations

import json

import pytest
import redis

from metrics_index.testing.servers import PrometheusStack, RedisServer, ScriptedHTTPServer, http_get


def test_redis_server_answers_and_starts_empty(redis_client: redis.Redis) -> None:
    assert redis_client.ping()
    assert redis_client.dbsize() == 0
    assert redis_client.info("server")["tcp_port"] == int(redis_client.connection_pool.connection_kwargs["port"])


def test_prometheus_has_metadata_for_both_jobs(prometheus_stack: PrometheusStack) -> None:
    for job, expected in (("prometheus", "prometheus_http_requests_total"), ("node", "node_cpu_seconds_total")):
        metadata = prometheus_stack.target_metadata(job)
        assert {entry["target"]["job"] for entry in metadata} == {job}
        assert expected in {entry["metric"] for entry in metadata}


def test_redis_process_keeps_data_across_a_saved_restart(redis_process: RedisServer) -> None:
    with redis_process.client() as client:
        client.sadd("kept", "a", "b")
    redis_process.stop(save=True)
    with redis_process.client() as client, pytest.raises(redis.ConnectionError):
        client.ping()
    redis_process.start()
    with redis_process.client() as client:
        assert client.smembers("kept") == {"a", "b"}


def test_http_stub_serves_canned_answers(http_stub: ScriptedHTTPServer) -> None:
    http_stub.answer("/api/v1/metadata", status=500, body="boom", content_type="text/plain")
    http_stub.answer("/api/v1/targets/metadata", body={"status": "success", "data": []})
    assert http_get(f"{http_stub.url}/api/v1/metadata") == (500, b"boom")
    status, body = http_get(f"{http_stub.url}/api/v1/targets/metadata?match_target=x")
    assert (status, json.loads(body)) == (200, {"status": "success", "data": []})
    assert http_get(f"{http_stub.url}/elsewhere")[0] == 404
    assert http_stub.requests[-2] == "/api/v1/targets/metadata?match_target=x"
