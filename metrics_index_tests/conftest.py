"""Fixtures that start real servers on free 127.0.0.1 ports (metrics_index/testing/servers.py) and keep each
test's state apart."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from dagster import DagsterInstance, instance_for_test

from metrics_index.testing.messages_api import MessagesAPIServer
from metrics_index.testing.servers import PrometheusStack, RedisServer, ScriptedHTTPServer
from metrics_index_tests.project import Project


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A developer's own settings must not reach the tests (no real LLM calls, no configured Redis or Prometheus),
    and whatever a test or the code under test puts in the environment (e.g. DAGSTER_HOME) is undone after it. The
    per-user data folder (the default home) is a fresh temporary folder, never the developer's."""
    saved = dict(os.environ)
    for name in saved:
        if name.startswith("METRICS_INDEX_") or name in {"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "DAGSTER_HOME"}:
            del os.environ[name]
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a redis-server shared by the session; use `redis_client` to start a test from an empty database."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_server: str) -> Iterator[redis.Redis]:
    """A client of the session's redis-server, emptied first so tests do not see each other's keys."""
    with redis.Redis.from_url(redis_server, decode_responses=True) as client:
        client.flushall()
        yield client


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, which the test may stop (`stop(save=True)` keeps the data) and start."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prometheus_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusStack]:
    stack = PrometheusStack.start(tmp_path_factory.mktemp("prometheus"))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def prometheus_server(prometheus_stack: PrometheusStack) -> str:
    """Base URL of a real Prometheus that already has metadata for jobs `prometheus` and `node`."""
    return prometheus_stack.url


@pytest.fixture
def http_stub() -> Iterator[ScriptedHTTPServer]:
    """A local HTTP server playing a broken Prometheus; nothing is served until the test says what to answer."""
    with ScriptedHTTPServer() as server:
        yield server


@pytest.fixture
def dagster_instance() -> Iterator[DagsterInstance]:
    """A throwaway Dagster instance (its own temporary home), so runs and partitions of one test stay there."""
    with instance_for_test() as instance:
        yield instance


@pytest.fixture
def project(tmp_path: Path, redis_client: redis.Redis, redis_server: str, dagster_instance: DagsterInstance) -> Project:
    """A metrics-index set-up of the test's own: registry, catalog and Chroma under tmp_path, the session's (emptied)
    Redis, a throwaway Dagster instance, rule-based enrichment."""
    home = tmp_path / "home"
    home.mkdir()
    return Project(home=home, redis_url=redis_server, instance=dagster_instance)


@pytest.fixture
def messages_api() -> Iterator[MessagesAPIServer]:
    """A running fake Messages API, stopped after the test."""
    with MessagesAPIServer() as server:
        yield server
