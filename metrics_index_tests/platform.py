"""Helpers for the platform tests: run the index job in process, a local Slack webhook receiver, and a Prometheus whose
targets carry `tenant` and `service` labels for namespace discovery."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dagster import AssetSelection, Definitions, ExecuteInProcessResult, define_asset_job

from metrics_index.assets import METRIC_ASSETS
from metrics_index.checks import METRIC_CHECKS
from metrics_index.namespaces import NAMESPACE_PARTITIONS
from metrics_index.resources import CheckThresholds
from metrics_index.settings import resources_from_env
from metrics_index.testing.servers import (
    LOOPBACK,
    CannedResponse,
    LoopbackHTTPServer,
    ManagedProcess,
    free_port,
    http_get,
    system_binary,
    wait_until,
)
from metrics_index_tests.project import Project


def run_namespace(
    project: Project, namespace: str, selection: AssetSelection | None = None, **thresholds: float
) -> ExecuteInProcessResult:
    """Materialize the namespace's assets with their checks (or run only `selection`) in process, as the index job
    does; never raises."""
    project.instance.add_dynamic_partitions(NAMESPACE_PARTITIONS.name, [namespace])
    selection = AssetSelection.all() if selection is None else selection
    job = define_asset_job("under_test", selection=selection, partitions_def=NAMESPACE_PARTITIONS)
    resources = {**resources_from_env(project.env), "check_thresholds": CheckThresholds(**thresholds)}
    definitions = Definitions(assets=METRIC_ASSETS, asset_checks=METRIC_CHECKS, jobs=[job], resources=resources)
    # The partition goes in as a tag: Dagster 1.13 refuses `partition_key` for a job that selects only checks.
    return definitions.resolve_job_def("under_test").execute_in_process(
        tags={"dagster/partition": namespace}, instance=project.instance, raise_on_error=False
    )


def graphql(url: str, query: str, variables: dict) -> dict:
    """Ask a running dagster-webserver's GraphQL endpoint (what the UI sends); any GraphQL error fails the test."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


class SlackReceiver(LoopbackHTTPServer):
    """A local stand-in for a Slack incoming webhook: records each JSON body posted to `path`; answers HTTP 500 to
    the next `failures` posts, then 200 "ok" as Slack does."""

    def __init__(self, path: str = "/services/T000/B000/secret-token") -> None:
        super().__init__()
        self.path = path
        self.messages: list[dict] = []
        self.failures = 0
        self.attempts = 0

    def respond(self, method: str, path: str, body: bytes) -> CannedResponse:
        self.attempts += 1
        if method != "POST" or path != self.path:
            return CannedResponse(404, b"no_service", "text/plain")
        if self.failures > 0:
            self.failures -= 1
            return CannedResponse(500, b"rollup_error", "text/plain")
        self.messages.append(json.loads(body))
        return CannedResponse(200, b"ok", "text/plain")

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.path}"

    def texts(self) -> list[str]:
        """Every message as one string (all its blocks), to search in."""
        return [json.dumps(message) for message in self.messages]


@dataclass
class LabelledPrometheus:
    """A Prometheus scraping itself (service `prometheus`) and/or a node-exporter (service `node`), each target
    labelled with a tenant and its service, so discovery finds `<tenant>:<service>`. Job names equal services."""

    url: str
    process: ManagedProcess

    @classmethod
    def start(
        cls,
        directory: Path,
        node_exporter_url: str = "",
        tenant: str = "acme",
        services: tuple[str, ...] = ("prometheus", "node"),
        other_targets: Mapping[str, str] | None = None,
    ) -> LabelledPrometheus:
        """`other_targets` maps more services to their `host:port` (listed in `services` too)."""
        port = free_port()
        targets = {"prometheus": f"{LOOPBACK}:{port}", "node": node_exporter_url.removeprefix("http://")}
        targets.update(other_targets or {})
        jobs = [
            {
                "job_name": name,
                "static_configs": [{"targets": [targets[name]], "labels": {"tenant": tenant, "service": name}}],
            }
            for name in services
        ]
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "prometheus.yml"
        config.write_text(
            json.dumps({"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": jobs})
        )
        process = ManagedProcess(
            "prometheus",
            [
                system_binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={LOOPBACK}:{port}",
            ],
            directory,
        )
        server = cls(f"http://{LOOPBACK}:{port}", process)
        process.start()
        try:
            for service in services:
                wait_until(
                    lambda service=service: server.has_metadata(tenant, service),
                    f"metadata of the {tenant}:{service} target",
                    timeout=60,
                    process=process,
                )
        except BaseException:
            process.stop()
            raise
        return server

    def has_metadata(self, tenant: str, service: str) -> bool:
        query = urllib.parse.urlencode({"match_target": f'{{tenant="{tenant}",service="{service}"}}'})
        status, body = http_get(f"{self.url}/api/v1/targets/metadata?{query}")
        return status == 200 and bool(json.loads(body)["data"])

    def stop(self) -> None:
        self.process.stop()
