"""Namespaces indexed once per test module by the real assets, and the service over them: in-process for the API,
on a real uvicorn socket for MCP over HTTP and for Prometheus."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import uvicorn
from dagster import instance_for_test
from fastapi import FastAPI
from fastapi.testclient import TestClient

from metrics_index.namespaces import DEFAULT_REGISTRY_PATH
from metrics_index.service.app import create_app
from metrics_index.service.core import CatalogService
from metrics_index.testing.servers import LOOPBACK, free_port, wait_until
from metrics_index_tests.project import Project, target_entry

SHOP = "shop:checkout"
PAYMENTS = "shop:payments"
NODE = "demo:node"
SHOP_METRICS = [
    target_entry("http_server_request_duration_seconds", "histogram", "Duration of HTTP requests.", job="checkout"),
    target_entry("http_server_requests_total", "counter", "HTTP requests served, by status code.", job="checkout"),
    target_entry("checkout_orders_total", "counter", "Orders placed through the checkout.", job="checkout"),
    target_entry("checkout_cart_items", "gauge", "Items in the carts being checked out.", job="checkout"),
    target_entry("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", job="checkout"),
]
PAYMENT_METRICS = [
    target_entry("payments_authorized_total", "counter", "Card payments authorized.", job="payments"),
    target_entry("payments_declined_total", "counter", "Card payments declined by the bank.", job="payments"),
]


class ServedApp:
    """The app on a real uvicorn server in a thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> ServedApp:
        self.thread.start()
        wait_until(lambda: self.server.started, "the service to start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[Project]:
    """Three namespaces (the demo's node exporter among them) indexed by the four assets with rules enrichment."""
    with instance_for_test() as instance:
        project = Project(home=tmp_path_factory.mktemp("serve"), redis_url=redis_server, instance=instance)
        project.extra_env["DAGSTER_HOME"] = instance.root_directory  # where the service reads the last runs
        project.register(SHOP, snapshot=project.write_snapshot("shop.json", SHOP_METRICS))
        project.register(PAYMENTS, snapshot=project.write_snapshot("payments.json", PAYMENT_METRICS))
        demo = str(DEFAULT_REGISTRY_PATH.parent / "demo-targets-metadata.json")
        project.register(NODE, snapshot=demo, selector='{job="node"}')
        for namespace in (SHOP, PAYMENTS, NODE):
            assert project.materialize(namespace).success
        yield project


@pytest.fixture(scope="module")
def service(indexed: Project) -> CatalogService:
    return CatalogService(indexed.env)


@pytest.fixture(scope="module")
def client(service: CatalogService, indexed: Project) -> Iterator[TestClient]:
    with TestClient(create_app(service, indexed.env)) as test_client:
        yield test_client
