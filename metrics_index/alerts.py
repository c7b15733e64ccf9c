"""Slack alerts for failed or warning asset checks and for failed runs.

A failed check does not fail its run (unless it blocks), so a run-failure sensor never sees it: the alert sensor
follows the runs that finished (success and failure, through the instance's run status events, with a cursor) and
reads each run's asset check evaluations from the event log. Each alert is a Block Kit message posted to a Slack
incoming webhook. Delivery is at most once per alert key; a failed post stays pending and is retried on a later tick.
The webhook URL is a secret: it is read from the environment and appears in no log, message or metadata.
"""

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import requests
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    DagsterEventType,
    DagsterInstance,
    EventLogEntry,
)

from metrics_index.resources import SLACK_WEBHOOK_ENV, SlackResource

RUN_EVENTS = (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE)
RUNS_PER_TICK = 50  # per run event type
POSTS_PER_TICK = 20
MAX_ATTEMPTS = 10  # a post failing this many ticks in a row is dropped (and logged)
MAX_PENDING = 200  # beyond this, the oldest pending alerts are dropped (and logged)
SENT_REMEMBERED = 200
_SUMMARY_CHARS = 500
Logger = logging.Logger | logging.LoggerAdapter


@dataclass
class Alert:
    key: str
    severity: str  # ERROR or WARN
    namespace: str
    asset: str
    check: str  # the check's name, or "run failed"
    measured: str
    expected: str
    summary: str
    run_id: str
    attempts: int = 0


@dataclass
class AlertState:
    """The sensor's cursor: how far each run event type was read, alerts not delivered yet, and the keys of
    recently delivered ones (so an alert seen twice is posted once)."""

    positions: dict[str, str] = field(default_factory=dict)
    pending: list[Alert] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    dropped: int = 0  # in this tick only; not kept in the cursor

    @classmethod
    def load(cls, cursor: str | None) -> "AlertState":
        document = json.loads(cursor) if cursor else {}
        return cls(
            positions=document.get("positions", {}),
            pending=[Alert(**alert) for alert in document.get("pending", [])],
            sent=document.get("sent", []),
        )

    def dump(self) -> str:
        pending = [asdict(alert) for alert in self.pending]
        return json.dumps({"positions": self.positions, "pending": pending, "sent": self.sent}, sort_keys=True)

    def add(self, alert: Alert) -> None:
        if alert.key in self.sent or any(alert.key == other.key for other in self.pending):
            return
        self.pending.append(alert)
        if len(self.pending) > MAX_PENDING:
            self.pending.pop(0)
            self.dropped += 1

    def delivered(self, alert: Alert) -> None:
        self.pending.remove(alert)
        self.sent = [*self.sent, alert.key][-SENT_REMEMBERED:]


def check_alert(evaluation: AssetCheckEvaluation, run_id: str) -> Alert | None:
    """The alert for a failed check evaluation, None when it passed."""
    if evaluation.passed:
        return None
    metadata = {key: value.value for key, value in evaluation.metadata.items()}
    summary = str(metadata.get("summary") or evaluation.description or "the check failed")
    if evaluation.blocking and evaluation.severity == AssetCheckSeverity.ERROR:
        summary += " (blocking: the assets downstream were not materialized)"
    asset = evaluation.asset_key.to_user_string()
    return Alert(
        key=f"{run_id}/{asset}/{evaluation.check_name}/{evaluation.partition or ''}",
        severity=evaluation.severity.value,
        namespace=evaluation.partition or "-",
        asset=asset,
        check=evaluation.check_name,
        measured=str(metadata.get("measured", "-")),
        expected=str(metadata.get("expected", "-")),
        summary=summary[:_SUMMARY_CHARS],
        run_id=run_id,
    )


def run_alerts(instance: DagsterInstance, run_id: str, failed: bool) -> Iterator[Alert]:
    """Alerts for one finished run: each failed check, and the failure itself unless an ERROR check explains it."""
    checks = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
    alerts = [check_alert(r.event_log_entry.asset_check_evaluation, run_id) for r in checks]
    alerts = [alert for alert in alerts if alert is not None]
    yield from alerts
    if failed and not any(alert.severity == AssetCheckSeverity.ERROR.value for alert in alerts):
        run = instance.get_run_by_id(run_id)
        steps = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_FAILURE).records
        yield Alert(
            key=f"{run_id}/run",
            severity=AssetCheckSeverity.ERROR.value,
            namespace=(run.tags.get("dagster/partition") if run else None) or "-",
            asset=run.job_name if run else "-",
            check="run failed",
            measured="-",
            expected="-",
            summary=_failure_reason([r.event_log_entry for r in steps])[:_SUMMARY_CHARS],
            run_id=run_id,
        )


def _failure_reason(step_failures: list[EventLogEntry]) -> str:
    """The first failed step and the innermost cause of its error (what the user's code raised)."""
    for entry in step_failures:
        error = entry.dagster_event.step_failure_data.error if entry.dagster_event else None
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None:
            return f"step {entry.step_key} failed: {error.message.strip()}"
    return "the run failed before or between its steps; see its event log"


def new_alerts(instance: DagsterInstance, cursor: str | None) -> AlertState:
    """Read the runs that finished since the cursor and queue their alerts. The first evaluation only marks where
    the event log stands: history is not alerted."""
    state = AlertState.load(cursor)
    for event_type in RUN_EVENTS:
        position = state.positions.get(event_type.value)
        if position is None:
            state.positions[event_type.value] = instance.fetch_run_status_changes(event_type, limit=1).cursor
            continue
        result = instance.fetch_run_status_changes(event_type, limit=RUNS_PER_TICK, cursor=position, ascending=True)
        for record in result.records:
            for alert in run_alerts(
                instance, record.event_log_entry.run_id, event_type == DagsterEventType.RUN_FAILURE
            ):
                state.add(alert)
        state.positions[event_type.value] = result.cursor
    return state


class SlackError(RuntimeError):
    """A post that did not go through; the message never contains the webhook URL."""


def post_to_slack(webhook_url: str, payload: dict, timeout: float) -> None:
    try:
        response = requests.post(webhook_url, json=payload, timeout=timeout)
    except requests.RequestException as error:
        raise SlackError(f"{type(error).__name__} while posting to the webhook") from None  # str(error) has the URL
    if response.status_code != 200:
        raise SlackError(f"the webhook answered HTTP {response.status_code}: {response.text[:100]}")


def deliver(state: AlertState, slack: SlackResource, log: Logger) -> str:
    """Post pending alerts, oldest first, until one fails (Slack is likely down: the rest wait for the next tick)."""
    if state.dropped:
        log.error(f"{state.dropped} alerts dropped: more than {MAX_PENDING} were waiting to be delivered")
    if not state.pending:
        return "no new alerts"
    if not slack.webhook_url:
        for alert in state.pending:
            log.warning(f"alert not sent (no {SLACK_WEBHOOK_ENV} configured): {_plain(alert)}")
        count, state.pending = len(state.pending), []
        return f"{count} alerts logged; no Slack webhook is configured"
    posted = 0
    for alert in list(state.pending[:POSTS_PER_TICK]):
        try:
            post_to_slack(slack.webhook_url, slack_message(alert, slack.ui_base_url), slack.timeout_seconds)
        except SlackError as error:
            alert.attempts += 1
            if alert.attempts >= MAX_ATTEMPTS:
                state.pending.remove(alert)
                log.error(f"alert dropped after {alert.attempts} failed posts ({error}): {_plain(alert)}")
            else:
                log.warning(f"Slack post failed, retried next tick (attempt {alert.attempts}): {error}")
            break
        state.delivered(alert)
        posted += 1
    return f"{posted} alerts posted to Slack, {len(state.pending)} pending"


def _plain(alert: Alert) -> str:
    return f"{alert.severity} {alert.namespace} {alert.asset}/{alert.check}: {alert.summary} (run {alert.run_id})"


def _escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(alert: Alert, ui_base_url: str) -> dict:
    """A Block Kit message: what failed where, the figure against its threshold, and a link to the run."""
    icon = ":red_circle:" if alert.severity == AssetCheckSeverity.ERROR.value else ":warning:"
    run_url = f"{ui_base_url.rstrip('/')}/runs/{alert.run_id}"
    what = "Run failed" if alert.check == "run failed" else f"Check {alert.check} failed"
    return {
        "text": f"{alert.severity}: {what} on {alert.namespace}: {alert.summary}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"{what} on {alert.namespace}"[:150]}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*Namespace*\n`{_escape(alert.namespace)}`"},
                    {"type": "mrkdwn", "text": f"*Check*\n`{_escape(alert.asset)}` / `{_escape(alert.check)}`"},
                    {"type": "mrkdwn", "text": f"*Severity*\n{icon} {alert.severity}"},
                    {
                        "type": "mrkdwn",
                        "text": f"*Measured*\n{_escape(alert.measured)} (expected {_escape(alert.expected)})",
                    },
                ],
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": _escape(alert.summary)}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{run_url}|Open the run in Dagster> · run `{alert.run_id}`"}],
            },
        ],
    }
