"""The daily schedule: one run per registered namespace, on a real Dagster instance."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dagster import (
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    SkipReason,
    build_schedule_context,
)

from metrics_index.definitions import defs, index_namespace_job
from metrics_index.jobs import ENRICHER_TAG, run_tags
from metrics_index.resources import EnricherResource
from metrics_index.schedules import build_index_schedule
from metrics_index.sensors import build_alert_sensor, build_namespace_sensor
from metrics_index.settings import PlatformSettings, platform_settings_from_env

RULES = {"enricher": EnricherResource(mode="rules")}


def _evaluate(instance: DagsterInstance) -> list[RunRequest] | SkipReason:
    schedule = build_index_schedule(index_namespace_job, PlatformSettings())
    when = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    return schedule(build_schedule_context(instance=instance, scheduled_execution_time=when, resources=RULES))


def test_one_run_per_registered_namespace(dagster_instance: DagsterInstance) -> None:
    dagster_instance.add_dynamic_partitions("namespace", ["demo:node", "acme:api", "demo:redis"])
    requests = _evaluate(dagster_instance)
    assert [r.partition_key for r in requests] == ["acme:api", "demo:node", "demo:redis"]
    assert len({r.run_key for r in requests}) == 3
    assert requests[0].run_key == "acme:api@2026-11-24T02:00:00+00:00"
    assert all(r.tags == {ENRICHER_TAG: "rules"} for r in requests)


def test_nothing_registered_is_a_skip(dagster_instance: DagsterInstance) -> None:
    result = _evaluate(dagster_instance)
    assert isinstance(result, SkipReason) and "namespace sensor" in result.skip_message


def test_cron_defaults_to_two_in_the_morning_and_is_configurable(dagster_instance: DagsterInstance) -> None:
    # Resolving `defs` reads the current instance's state storage: the fixture keeps a live one in scope (an instance
    # closed by an earlier test stays registered in Dagster 1.13 and fails the resolution).
    schedule = defs.get_schedule_def("index_all_namespaces")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "UTC")
    settings = platform_settings_from_env(
        {"METRICS_INDEX_SCHEDULE_CRON": "30 3 * * 1", "METRICS_INDEX_SCHEDULE_TIMEZONE": "Europe/Paris"}
    )
    custom = build_index_schedule(index_namespace_job, settings)
    assert (custom.cron_schedule, custom.execution_timezone) == ("30 3 * * 1", "Europe/Paris")


@pytest.mark.parametrize(
    ("mode", "key", "expected"), [("rules", "", "rules"), ("auto", "", "rules"), ("auto", "k", "claude")]
)
def test_runs_are_tagged_with_the_enricher_the_run_queue_limits(
    mode: str, key: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if key:
        monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    assert run_tags(EnricherResource(mode=mode)) == {ENRICHER_TAG: expected}


def test_the_index_job_runs_the_checks_too(dagster_instance: DagsterInstance) -> None:
    job = defs.resolve_job_def("index_namespace")
    assert len(job.asset_layer.asset_graph.asset_check_keys) == 11


def test_automation_off_leaves_schedule_and_sensors_stopped() -> None:
    settings = platform_settings_from_env({"METRICS_INDEX_AUTOMATION": "off"})
    assert build_index_schedule(index_namespace_job, settings).default_status == DefaultScheduleStatus.STOPPED
    sensors = [build_namespace_sensor(index_namespace_job, settings), build_alert_sensor(settings)]
    assert {sensor.default_status for sensor in sensors} == {DefaultSensorStatus.STOPPED}
    assert build_alert_sensor(PlatformSettings()).default_status == DefaultSensorStatus.RUNNING
