"""Asset checks: the measurements as plain functions, then every check passing on real metadata (the demo snapshot and
a live Prometheus) and failing when the real catalog, Redis set or Chroma index is broken on purpose."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from unittest.mock import ANY

import pandas as pd
import pytest
import redis
from dagster import AssetSelection, ExecuteInProcessResult, FloatMetadataValue, IntMetadataValue

from metrics_index import checks
from metrics_index.assets import METRIC_ASSETS
from metrics_index.checks import METRIC_CHECKS, Measurement
from metrics_index.namespaces import DEFAULT_REGISTRY_PATH, GoldenQuery
from metrics_index.settings import resources_from_env
from metrics_index.stores.name_set import names_key
from metrics_index_tests.platform import run_namespace
from metrics_index_tests.project import Project

DEMO_SNAPSHOT = DEFAULT_REGISTRY_PATH.parent / "demo-targets-metadata.json"
NODE_GOLDEN = {"question": "free disk space on filesystems", "expected": ["node_filesystem_avail_bytes"]}


def _enriched(rows: Iterable[tuple[str, str, str, str]]) -> pd.DataFrame:
    """Enriched rows from (name, prometheus type, meter type, category), valid in every other field."""
    return pd.DataFrame(
        [
            {
                "metric_name": name,
                "type": kind,
                "description": f"{name} described",
                "category": category,
                "subcategory": {"compute": "cpu", "memory": "usage", "other": "general"}[category],
                "golden_signal_type": "traffic",
                "golden_signal_description": "why",
                "meter_type": meter,
                "unit": "",
                "enricher": "rules",
            }
            for name, kind, meter, category in rows
        ]
    )


# --- measurements, no servers --------------------------------------------------------------------------------------


def test_raw_measurements_name_the_offending_metrics() -> None:
    raw = pd.DataFrame(
        {
            "metric_name": ["up", "up", "http-requests", "node_cpu_seconds_total", "9lives"],
            "type": ["gauge"] * 5,
            "help": ["", "x", "y", "  ", "z"],
            "unit": [""] * 5,
        }
    )
    assert checks.duplicate_names(raw).details["duplicates"] == ["up"]
    invalid = checks.invalid_names(raw)
    assert (invalid.passed, invalid.measured, invalid.details["invalid"]) == (False, 2, ["9lives", "http-requests"])
    share = checks.help_share(raw, minimum=0.5)
    assert (share.passed, share.measured, share.details["without_help"]) == (
        True,
        0.6,
        ["node_cpu_seconds_total", "up"],
    )
    assert not checks.help_share(raw, minimum=0.61).passed
    empty = checks.help_share(raw.head(0), minimum=0.5)
    assert (empty.passed, empty.measured, empty.summary) == (
        False,
        0.0,
        "the namespace has no metrics: check its selector",
    )


def test_name_set_difference_counts_missing_and_extra() -> None:
    result = checks.name_set_difference({"a", "b", "c"}, {"b", "c", "zombie"})
    assert (result.passed, result.measured, result.details) == (False, 2, {"missing": ["a"], "extra": ["zombie"]})
    assert checks.name_set_difference({"a"}, {"a"}).passed


def test_enrichment_success_rate_counts_fallbacks() -> None:
    enriched = _enriched((f"m{i}", "gauge", "gauge", "other") for i in range(20))
    assert checks.enrichment_success_rate(enriched, 0.95).measured == 1.0
    enriched.loc[0, "enricher"] = "fallback"
    one = checks.enrichment_success_rate(enriched, 0.95)
    assert (one.passed, one.measured, one.details["fallbacks"]) == (True, 0.95, ["m0"])
    enriched.loc[1, "enricher"] = "fallback"
    assert not checks.enrichment_success_rate(enriched, 0.95).passed


def test_vocabulary_violations_use_the_enrichers_validation() -> None:
    enriched = _enriched([("a", "gauge", "gauge", "memory"), ("b", "gauge", "gauge", "compute")])
    assert checks.vocabulary_violations(enriched).passed
    enriched.loc[1, "subcategory"] = "usage"  # a memory subcategory under compute
    enriched.loc[0, "meter_type"] = "speedometer"
    result = checks.vocabulary_violations(enriched)
    assert (result.passed, result.measured) == (False, 0.0)
    assert "speedometer" in result.details["violations"]["a"]
    assert "not in category 'compute'" in result.details["violations"]["b"]


def test_type_agreement_accepts_info_declared_as_gauge_and_skips_unknown() -> None:
    enriched = _enriched(
        [
            ("go_info", "gauge", "info", "other"),
            ("c_total", "counter", "counter", "other"),
            ("mystery", "unknown", "gauge", "other"),
            ("wrong_total", "counter", "gauge", "other"),
        ]
    )
    result = checks.type_agreement(enriched, minimum=0.6)
    assert (result.passed, result.measured) == (True, round(2 / 3, 4))
    assert result.details["disagreements"] == {"wrong_total": "counter -> gauge"}
    assert not checks.type_agreement(enriched, minimum=0.7).passed


def test_category_drift_warns_only_above_the_threshold() -> None:
    before = checks.category_shares(_enriched([(f"m{i}", "gauge", "gauge", "memory") for i in range(10)]))
    assert before == {"memory": 100.0}
    assert checks.category_drift(before, None, 10).passed
    small = {"memory": 92.0, "compute": 8.0}
    assert checks.category_drift(small, before, 10).measured == 8.0
    assert checks.category_drift(small, before, 10).passed
    large = checks.category_drift({"memory": 70.0, "compute": 30.0}, before, 10)
    assert (large.passed, large.measured) == (False, 30.0)
    assert "compute +30.0" in large.summary and "memory -30.0" in large.summary


def test_index_consistency_and_golden_recall() -> None:
    result = checks.index_consistency({"n/a", "n/b"}, {"n/b", "n/old"})
    assert (result.passed, result.details) == (False, {"missing": ["n/a"], "stale": ["n/old"]})
    queries = [GoldenQuery("q1", ("a", "b")), GoldenQuery("q2", ("c",))]
    recall = checks.golden_recall(queries, [["x", "b"], ["x", "y", "z", "w", "v", "c"]], minimum=0.5)
    assert (recall.passed, recall.measured, list(recall.details["misses"])) == (True, 0.5, ["q2"])
    assert checks.golden_recall([], [], minimum=0.8).passed


def test_measurement_result_carries_the_figures_alerts_quote() -> None:
    result = Measurement(False, 0.9, ">= 0.95", "90% ok", {"misses": ["a"]}).result("c", checks.WARN, "demo:node")
    assert result.metadata["measured"].value == "0.9"  # text: the UI plots no line through every namespace
    assert result.metadata["measured (demo:node)"].value == 0.9  # the namespace's own plot
    assert result.metadata["expected"].value == ">= 0.95"
    assert result.metadata["misses"].value == ["a"]
    assert (result.passed, result.severity, result.description) == (False, checks.WARN, "90% ok")


# --- the checks on real data ---------------------------------------------------------------------------------------


def _outcomes(result: ExecuteInProcessResult) -> dict[str, tuple[bool, float]]:
    return {
        e.check_name: (e.passed, e.metadata[checks.plotted_label(e.partition)].value)
        for e in result.get_asset_check_evaluations()
    }


@pytest.fixture
def demo_node(project: Project) -> str:
    """The demo snapshot's node-exporter job (a real Prometheus answer), with a golden query."""
    project.register("demo:node", snapshot=str(DEMO_SNAPSHOT), selector='{job="node"}', golden_queries=[NODE_GOLDEN])
    return "demo:node"


def test_every_check_passes_on_the_demo_snapshot(project: Project, demo_node: str) -> None:
    result = run_namespace(project, demo_node)
    assert result.success
    outcomes = _outcomes(result)
    assert set(outcomes) == {spec.name for check in METRIC_CHECKS for spec in check.check_specs}
    assert all(passed for passed, _ in outcomes.values()), outcomes
    assert outcomes[checks.INDEX_MATCHES][1] == len(project.catalog("enriched_metric_metadata", demo_node))
    assert outcomes[checks.GOLDEN_RECALL][1] == 1.0
    # The UI draws one plot per numeric metadata label through all of a check's evaluations: every number a check
    # records is under a label naming the namespace, so no plot mixes namespaces (the category drift's did).
    numeric = {
        label
        for e in result.get_asset_check_evaluations()
        for label, value in e.metadata.items()
        if isinstance(value, IntMetadataValue | FloatMetadataValue)
    }
    assert numeric == {"measured (demo:node)"}


def test_every_check_passes_on_a_live_prometheus(project: Project, prometheus_server: str) -> None:
    project.extra_env["METRICS_INDEX_PROMETHEUS_URL"] = prometheus_server
    project.register("live:node")
    result = run_namespace(project, "live:node")
    assert result.success
    assert all(passed for passed, _ in _outcomes(result).values()), _outcomes(result)


def test_invalid_names_fail_and_block_everything_downstream(project: Project) -> None:
    entries = json.loads(DEMO_SNAPSHOT.read_text())["data"]
    pushgateway = [entry for entry in entries if entry["target"]["job"] == "pushgateway"]
    broken = {**pushgateway[0], "metric": "pushgateway-requests"}
    snapshot = project.write_snapshot("broken.json", [*pushgateway, broken])
    project.register("demo:broken", snapshot=snapshot, selector='{job="pushgateway"}')
    result = run_namespace(project, "demo:broken")
    assert not result.success
    assert _outcomes(result)[checks.VALID_NAMES] == (False, 1)
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized == {"raw_metric_metadata"}


def test_every_check_fails_when_its_data_is_broken(project: Project, demo_node: str, redis_client: redis.Redis) -> None:
    """One good run, then each store broken the way it breaks in real life, then only the checks run again."""
    assert run_namespace(project, demo_node).success
    catalog = project.home / "catalog"

    raw_path = catalog / "raw_metric_metadata" / "demo" / "node.parquet"
    raw = pd.read_parquet(raw_path)
    raw.loc[: len(raw) // 5, "help"] = ""
    raw.loc[raw["metric_name"] == "node_load1", "conflicting_types"] = "counter,gauge"
    raw.to_parquet(raw_path)

    redis_client.srem(names_key(demo_node), "node_load1")
    redis_client.sadd(names_key(demo_node), "node_removed_long_ago")

    enriched_path = catalog / "enriched_metric_metadata" / "demo" / "node.parquet"
    enriched = pd.read_parquet(enriched_path)
    tenth = enriched.index[: len(enriched) // 10]
    enriched.loc[tenth, ["enricher", "category", "subcategory"]] = ["fallback", "other", "general"]
    enriched.loc[enriched["type"] == "counter", "meter_type"] = "gauge"
    enriched.to_parquet(enriched_path)

    collection = project.index().collection
    collection.delete(ids=[f"{demo_node}/node_load1"])
    kept = collection.get(ids=[f"{demo_node}/node_load5"], include=["embeddings", "metadatas", "documents"])
    collection.add(
        ids=[f"{demo_node}/node_gone_total"], **{key: kept[key] for key in ("embeddings", "metadatas", "documents")}
    )
    unanswerable = {"question": "coffee brewed per hour", "expected": ["espresso_shots_total"]}
    project.register(
        demo_node, snapshot=str(DEMO_SNAPSHOT), selector='{job="node"}', golden_queries=[NODE_GOLDEN, unanswerable]
    )

    checks_only = AssetSelection.checks_for_assets(*METRIC_ASSETS)
    result = run_namespace(project, demo_node, checks_only, max_category_drift_points=5)
    outcomes = _outcomes(result)
    metadata = {e.check_name: {k: v.value for k, v in e.metadata.items()} for e in result.get_asset_check_evaluations()}
    passing = sorted(name for name, (passed, _) in outcomes.items() if passed)
    assert passing == [checks.UNIQUE_NAMES, checks.VALID_NAMES, checks.VOCABULARY], outcomes
    assert outcomes[checks.HELP_SHARE][1] < 0.9
    assert metadata[checks.CONSISTENT_TYPES]["conflicts"] == {"node_load1": "counter,gauge"}
    assert outcomes[checks.NAME_SET_MATCHES][1] == 2
    assert metadata[checks.NAME_SET_MATCHES]["missing"] == ["node_load1"]
    assert outcomes[checks.SUCCESS_RATE][1] < 0.95
    assert outcomes[checks.TYPE_AGREEMENT][1] < 0.95
    assert outcomes[checks.CATEGORY_DRIFT][1] > 5  # 'other' grew by about ten points since the good run
    assert metadata[checks.INDEX_MATCHES]["missing"] == [f"{demo_node}/node_load1"]
    assert metadata[checks.INDEX_MATCHES]["stale"] == [f"{demo_node}/node_gone_total"]
    assert outcomes[checks.GOLDEN_RECALL][1] == 0.5

    # The integrity checks block what would be corrupted after them: the name set and the index.
    pd.concat([raw, raw.head(3)]).to_parquet(raw_path)
    outcomes = _outcomes(run_namespace(project, demo_node, AssetSelection.checks_for_assets(*METRIC_ASSETS[:2])))
    assert outcomes == {
        checks.UNIQUE_NAMES: (False, 3),
        checks.VALID_NAMES: (True, 0),
        checks.HELP_SHARE: ANY,
        checks.CONSISTENT_TYPES: (False, 1),
    }
    enriched.loc[enriched.index[-1], "golden_signal_type"] = "vibes"
    enriched.to_parquet(enriched_path)
    outcomes = _outcomes(run_namespace(project, demo_node, AssetSelection.checks_for_assets(*METRIC_ASSETS[2:])))
    assert outcomes[checks.VOCABULARY] == (False, round(1 - 1 / len(enriched), 4))
    assert checks.INDEX_MATCHES not in outcomes


def test_thresholds_come_from_the_environment(tmp_path: Path) -> None:
    thresholds = resources_from_env({"METRICS_INDEX_HOME": str(tmp_path), "METRICS_INDEX_CHECK_MIN_HELP_SHARE": "0.5"})
    assert thresholds["check_thresholds"].min_help_share == 0.5
    assert thresholds["check_thresholds"].min_enrichment_success_rate == 0.95
