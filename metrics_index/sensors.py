"""The sensors: the namespace sensor keeps partitions and runs in step with the registry; the alert sensor tells Slack.

The namespace sensor adds a `namespace` partition for every namespace the registry lists (and, when the registry
has a `discover:` rule, every `tenant:service` pair found on Prometheus targets), and requests a run for a
namespace that is new or whose set of metric names changed. The cursor keeps a short fingerprint of each
namespace's names, never the names. Planning is a plain function (`plan_tick`) so it is tested without Dagster.
"""

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from metrics_index.alerts import deliver, new_alerts
from metrics_index.jobs import run_tags
from metrics_index.namespaces import NAMESPACE_PARTITIONS, Namespace, NamespaceError
from metrics_index.resources import EnricherResource, PrometheusResource, SlackResource
from metrics_index.settings import PlatformSettings
from metrics_index.sources import SourceError


@dataclass(frozen=True)
class NamespaceState:
    """What the sensor remembers of a namespace: the fingerprint it last requested a run for, and how many runs it
    requested (part of the run key, so a set of names that comes back after a change is indexed again)."""

    fingerprint: str
    runs: int


@dataclass
class Observation:
    """The namespaces listed now, each with the fingerprint of its metric names (None: they could not be read)."""

    fingerprints: dict[str, str | None] = field(default_factory=dict)
    discovery_failed: bool = False
    errors: list[str] = field(default_factory=list)


@dataclass
class TickPlan:
    add: list[str]
    runs: list[tuple[str, str]]  # (namespace, run key)
    deferred: list[str]  # new or changed, left for a later tick by the bound on runs per tick
    removed: list[str]
    delete: list[str]
    cursor: dict[str, NamespaceState]

    def summary(self) -> str:
        parts = [f"{len(self.runs)} runs requested", f"{len(self.add)} namespaces added"]
        parts += [f"{len(self.deferred)} deferred to the next tick"] if self.deferred else []
        parts += [f"{len(self.removed)} left the registry"] if self.removed else []
        return ", ".join(parts)


def fingerprint(names: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(set(names))).encode()).hexdigest()[:16]


def plan_tick(
    previous: Mapping[str, NamespaceState],
    observation: Observation,
    partitions: set[str],
    max_runs: int,
    delete_removed: bool,
) -> TickPlan:
    """New namespaces first, then changed ones, alphabetically, at most `max_runs`; what is left keeps its old
    state so the next tick sees it again. A namespace whose metrics could not be read gets its partition but no
    run. When discovery failed, namespaces missing from the listing are kept: they may only be unreachable."""
    listed = observation.fingerprints
    new = sorted(ns for ns, fp in listed.items() if fp is not None and ns not in previous)
    changed = sorted(ns for ns, fp in listed.items() if ns in previous and fp not in (None, previous[ns].fingerprint))
    wanted = new + changed
    cursor = {ns: state for ns, state in previous.items() if ns in listed or observation.discovery_failed}
    runs = []
    for namespace in wanted[:max_runs]:
        state = NamespaceState(listed[namespace], previous[namespace].runs + 1 if namespace in previous else 1)
        cursor[namespace] = state
        runs.append((namespace, f"{namespace}#{state.runs}:{state.fingerprint}"))
    removed = [] if observation.discovery_failed else sorted(set(previous) - set(listed))
    return TickPlan(
        add=sorted(set(listed) - partitions),
        runs=runs,
        deferred=wanted[max_runs:],
        removed=removed,
        delete=[ns for ns in removed if ns in partitions] if delete_removed else [],
        cursor=dict(sorted(cursor.items())),
    )


def load_cursor(cursor: str | None) -> dict[str, NamespaceState]:
    document = json.loads(cursor) if cursor else {}
    return {ns: NamespaceState(**state) for ns, state in document.get("namespaces", {}).items()}


def dump_cursor(states: Mapping[str, NamespaceState]) -> str:
    return json.dumps({"namespaces": {ns: vars(state) for ns, state in states.items()}}, sort_keys=True)


def observe(prometheus: PrometheusResource) -> Observation:
    """Fingerprint every registered namespace (through the same fetch the raw asset uses) and every discovered one."""
    registry = prometheus.registry()
    observation = Observation()
    for namespace in sorted(registry.sources):
        try:
            observation.fingerprints[namespace] = fingerprint(prometheus.fetch(namespace, registry)["metric_name"])
        except (SourceError, NamespaceError) as error:
            observation.fingerprints[namespace] = None
            observation.errors.append(f"namespace {namespace}: {error}")
    if registry.discovery is not None:
        try:
            found = prometheus.discover(registry)
        except SourceError as error:
            observation.discovery_failed = True
            observation.errors.append(f"namespace discovery failed, no namespace is treated as removed: {error}")
            return observation
        for namespace, names in sorted(found.items()):
            try:
                Namespace.parse(namespace)
            except NamespaceError as error:
                observation.errors.append(f"discovered target labels skipped: {error}")
                continue
            observation.fingerprints.setdefault(namespace, fingerprint(names))
    return observation


def build_namespace_sensor(job: UnresolvedAssetJobDefinition, settings: PlatformSettings) -> SensorDefinition:
    @sensor(
        name="namespace_sensor",
        job=job,
        minimum_interval_seconds=settings.namespace_sensor_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING if settings.automation else DefaultSensorStatus.STOPPED,
        description="Adds registered and discovered namespaces as partitions; runs those that are new or changed.",
    )
    def namespace_sensor(
        context: SensorEvaluationContext, prometheus: PrometheusResource, enricher: EnricherResource
    ) -> SensorResult:
        observation = observe(prometheus)
        for error in observation.errors:
            context.log.warning(error)
        partitions = set(context.instance.get_dynamic_partitions(NAMESPACE_PARTITIONS.name))
        plan = plan_tick(
            load_cursor(context.cursor),
            observation,
            partitions,
            settings.max_runs_per_tick,
            settings.delete_removed_namespaces,
        )
        for namespace in plan.removed:
            fate = "its partition is deleted" if namespace in plan.delete else "its partition and catalog are kept"
            context.log.warning(f"namespace {namespace} is no longer in the registry: {fate}")
        requests = [NAMESPACE_PARTITIONS.build_add_request(plan.add)] if plan.add else []
        requests += [NAMESPACE_PARTITIONS.build_delete_request(plan.delete)] if plan.delete else []
        tags = run_tags(enricher) if plan.runs else {}
        runs = [RunRequest(run_key=key, partition_key=namespace, tags=tags) for namespace, key in plan.runs]
        return SensorResult(
            run_requests=runs or None,
            skip_reason=None if runs else plan.summary(),
            dynamic_partitions_requests=requests,
            cursor=dump_cursor(plan.cursor),
        )

    return namespace_sensor


def build_alert_sensor(settings: PlatformSettings) -> SensorDefinition:
    @sensor(
        name="slack_alert_sensor",
        minimum_interval_seconds=settings.alert_sensor_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING if settings.automation else DefaultSensorStatus.STOPPED,
        description="Posts failed and warning asset checks, and failed runs, to Slack.",
    )
    def slack_alert_sensor(context: SensorEvaluationContext, slack: SlackResource) -> SensorResult:
        state = new_alerts(context.instance, context.cursor)
        outcome = deliver(state, slack, context.log)
        return SensorResult(skip_reason=outcome, cursor=state.dump())

    return slack_alert_sensor
