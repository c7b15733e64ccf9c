"""Slack alerts: message building, deduplication and delivery as plain functions, then the alert sensor on a real
Dagster instance posting to a local webhook receiver after real runs with failing checks and a failing run."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from dagster import AssetCheckEvaluation, AssetCheckSeverity, AssetKey, EnvVar, SensorResult, build_sensor_context

from metrics_index.alerts import (
    MAX_PENDING,
    Alert,
    AlertState,
    SlackError,
    check_alert,
    deliver,
    post_to_slack,
    slack_message,
)
from metrics_index.namespaces import DEFAULT_REGISTRY_PATH
from metrics_index.resources import SLACK_WEBHOOK_ENV, SlackResource
from metrics_index.sensors import build_alert_sensor
from metrics_index.settings import PlatformSettings, resources_from_env
from metrics_index.testing.servers import free_port
from metrics_index_tests.platform import SlackReceiver, run_namespace
from metrics_index_tests.project import Project

DEMO_SNAPSHOT = DEFAULT_REGISTRY_PATH.parent / "demo-targets-metadata.json"
UI = "http://dagster.example:3000"
LOG = logging.getLogger("metrics_index_tests.alerts")


def _alert(
    key: str = "run-1/raw/help", severity: str = "WARN", summary: str = "80.0% of 10 metrics have help"
) -> Alert:
    return Alert(
        key, severity, "demo:node", "raw_metric_metadata", "help_text_share", "0.8", ">= 0.9", summary, "run-1"
    )


@pytest.fixture
def receiver() -> Iterator[SlackReceiver]:
    with SlackReceiver() as server:
        yield server


# --- plain functions -----------------------------------------------------------------------------------------------


def test_message_names_namespace_check_severity_figure_and_run_link() -> None:
    message = slack_message(_alert(summary="a <b> & c"), UI + "/")
    text = json.dumps(message)
    assert message["text"].startswith("WARN: Check help_text_share failed on demo:node")
    assert message["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Check help_text_share failed on demo:node"},
    }
    fields = [field["text"] for field in message["blocks"][1]["fields"]]
    assert fields == [
        "*Namespace*\n`demo:node`",
        "*Check*\n`raw_metric_metadata` / `help_text_share`",
        "*Severity*\n:warning: WARN",
        "*Measured*\n0.8 (expected &gt;= 0.9)",
    ]
    assert message["blocks"][2]["text"]["text"] == "a &lt;b&gt; &amp; c"
    assert f"<{UI}/runs/run-1|Open the run in Dagster>" in text


def test_check_alert_from_an_evaluation() -> None:
    def evaluation(passed: bool) -> AssetCheckEvaluation:
        return AssetCheckEvaluation(
            asset_key=AssetKey("raw_metric_metadata"),
            check_name="valid_metric_names",
            passed=passed,
            metadata={"measured": 2, "expected": "= 0", "summary": "2 names are not valid"},
            severity=AssetCheckSeverity.ERROR,
            blocking=True,
            partition="demo:node",
        )

    alert = check_alert(evaluation(passed=False), "run-7")
    assert (alert.namespace, alert.check, alert.severity, alert.measured, alert.expected) == (
        "demo:node",
        "valid_metric_names",
        "ERROR",
        "2",
        "= 0",
    )
    assert alert.summary == "2 names are not valid (blocking: the assets downstream were not materialized)"
    assert alert.key == "run-7/raw_metric_metadata/valid_metric_names/demo:node"
    assert check_alert(evaluation(passed=True), "run-7") is None


def test_state_deduplicates_and_survives_the_cursor() -> None:
    state = AlertState()
    state.add(_alert())
    state.add(_alert())
    assert len(state.pending) == 1
    state.delivered(state.pending[0])
    state.add(_alert())
    assert (state.pending, state.sent) == ([], ["run-1/raw/help"])
    state.add(_alert("other"))
    assert AlertState.load(state.dump()) == state
    for number in range(MAX_PENDING):
        state.add(_alert(f"flood-{number}"))
    assert len(state.pending) == MAX_PENDING and state.dropped == 1 and state.pending[0].key == "flood-0"


def test_without_a_webhook_alerts_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    state = AlertState(pending=[_alert()])
    with caplog.at_level(logging.WARNING):
        outcome = deliver(state, SlackResource(), LOG)
    assert outcome == "1 alerts logged; no Slack webhook is configured"
    assert state.pending == [] and SLACK_WEBHOOK_ENV in caplog.text and "help_text_share" in caplog.text


def test_a_failed_post_stays_pending_and_never_logs_the_webhook(
    receiver: SlackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    state = AlertState(pending=[_alert("first"), _alert("second")])
    receiver.failures = 1
    with caplog.at_level(logging.WARNING):
        assert deliver(state, SlackResource(webhook_url=receiver.url), LOG) == "0 alerts posted to Slack, 2 pending"
    assert [alert.attempts for alert in state.pending] == [1, 0]  # stopped at the first failure
    assert "HTTP 500" in caplog.text and "secret-token" not in caplog.text

    closed = f"http://127.0.0.1:{free_port()}/services/T000/B000/secret-token"
    with pytest.raises(SlackError) as error:
        post_to_slack(closed, {"text": "x"}, timeout=2)
    assert "secret-token" not in str(error.value) and error.value.__cause__ is None

    assert deliver(state, SlackResource(webhook_url=receiver.url), LOG) == "2 alerts posted to Slack, 0 pending"
    assert [m["text"].split(":")[0] for m in receiver.messages] == ["WARN", "WARN"]
    assert state.sent == ["first", "second"]


def test_the_webhook_is_configured_as_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resources_from_env({})["slack"].webhook_url == ""
    monkeypatch.setenv(SLACK_WEBHOOK_ENV, "http://127.0.0.1:1/hook")
    slack = resources_from_env()["slack"]
    assert slack.webhook_url == EnvVar(SLACK_WEBHOOK_ENV)  # the configuration holds the variable's name only
    assert slack.process_config_and_initialize().webhook_url == "http://127.0.0.1:1/hook"


# --- the sensor on a real instance, after real runs ----------------------------------------------------------------


class AlertSensorHarness:
    def __init__(self, project: Project, receiver: SlackReceiver) -> None:
        self.project = project
        self.sensor = build_alert_sensor(PlatformSettings())
        self.slack = SlackResource(webhook_url=receiver.url, ui_base_url=UI)
        self.cursor: str | None = None

    def tick(self) -> str:
        context = build_sensor_context(
            instance=self.project.instance, cursor=self.cursor, resources={"slack": self.slack}
        )
        result = self.sensor(context)
        assert isinstance(result, SensorResult)
        self.cursor = result.cursor
        return result.skip_reason.skip_message


def test_sensor_posts_failed_checks_and_failed_runs_once(project: Project, receiver: SlackReceiver) -> None:
    harness = AlertSensorHarness(project, receiver)
    project.register("demo:node", snapshot=str(DEMO_SNAPSHOT), selector='{job="node"}')
    assert run_namespace(project, "demo:node").success  # before the sensor's first tick: history is not alerted
    assert harness.tick() == "no new alerts"

    run = run_namespace(project, "demo:node", min_help_share=1.01, min_type_agreement=1.01)
    assert run.success  # a failing WARN check does not fail its run
    receiver.failures = 1
    assert harness.tick() == "0 alerts posted to Slack, 2 pending"
    assert harness.tick() == "2 alerts posted to Slack, 0 pending"
    assert harness.tick() == "no new alerts"
    help_alert, type_alert = receiver.messages
    assert help_alert["blocks"][0]["text"]["text"] == "Check help_text_share failed on demo:node"
    assert help_alert["blocks"][1]["fields"][3]["text"] == "*Measured*\n1.0 (expected &gt;= 1.01)"
    assert f"{UI}/runs/{run.run_id}" in json.dumps(help_alert)
    assert "type_agreement" in json.dumps(type_alert)

    project.register("demo:gone", snapshot=str(DEMO_SNAPSHOT.with_name("missing.json")), selector='{job="x"}')
    failed = run_namespace(project, "demo:gone")
    assert not failed.success
    assert harness.tick() == "1 alerts posted to Slack, 0 pending"
    run_alert = json.dumps(receiver.messages[-1])
    assert "Run failed on demo:gone" in run_alert and "missing.json does not exist" in run_alert
    assert f"/runs/{failed.run_id}" in run_alert

    entries = json.loads(DEMO_SNAPSHOT.read_text())["data"]
    bad = [
        {**entry, "metric": entry["metric"].replace("_", "-")}
        for entry in entries
        if entry["target"]["job"] == "blackbox"
    ]
    project.register("demo:bad", snapshot=project.write_snapshot("bad.json", bad), selector='{job="blackbox"}')
    assert not run_namespace(project, "demo:bad").success
    assert harness.tick() == "1 alerts posted to Slack, 0 pending"  # the blocking check explains the failed run
    blocking = json.dumps(receiver.messages[-1])
    assert "Check valid_metric_names failed on demo:bad" in blocking and ":red_circle: ERROR" in blocking
