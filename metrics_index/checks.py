"""Asset checks on every namespace's four assets.

Integrity checks (severity ERROR) guard what a later step relies on: duplicate or invalid names would corrupt the
name set and the index, words outside the vocabularies would land in Chroma, so those checks block the assets
downstream. Quality checks (severity WARN) measure how good the catalog is and never stop a run.

Each measurement is a plain function returning a `Measurement`; the Dagster checks below only load inputs and turn
measurements into results. Every result carries `measured`, `expected` and `summary` metadata, which the Slack
alerts quote, and the figure again under "measured (<namespace>)", so the UI plots it per namespace. All
thresholds live in `CheckThresholds` (resources.py).
"""

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetIn,
    MetadataValue,
    PreviewWarning,
    ResourceParam,
    multi_asset_check,
)
from dagster._core.event_api import PartitionKeyFilter  # the only way to read one partition's check history
from pydantic import ValidationError

from metrics_index.assets import enriched_metric_metadata, metric_name_set, metric_semantic_index, raw_metric_metadata
from metrics_index.enrichment.incremental import FALLBACK
from metrics_index.enrichment.vocabulary import EnrichedFields
from metrics_index.io import ParquetIOManager
from metrics_index.namespaces import NAMESPACE_PARTITIONS, GoldenQuery
from metrics_index.resources import (
    GOLDEN_K,
    CheckThresholds,
    ChromaResource,
    PrometheusResource,
    RedisResource,
)
from metrics_index.sources.base import CONFLICTING_TYPES
from metrics_index.stores.name_set import all_names, promql_names
from metrics_index.stores.semantic_index import document_id

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LISTED = 20  # offending names quoted in metadata and alerts
# Meter types that agree with each declared Prometheus type. The classic text format has no info or stateset
# type, so exporters declare those as gauges; 'unknown' declares nothing and is left out.
COMPATIBLE_METER_TYPES: dict[str, set[str]] = {
    "counter": {"counter"},
    "gauge": {"gauge", "info", "stateset"},
    "histogram": {"histogram"},
    "gaugehistogram": {"histogram"},
    "summary": {"summary"},
    "info": {"info"},
    "stateset": {"stateset"},
}


@dataclass(frozen=True)
class Measurement:
    """What a check measured, against what it expected, and the evidence a person needs to act on it."""

    passed: bool
    measured: float
    expected: str
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def result(self, check_name: str, severity: AssetCheckSeverity, partition: str) -> AssetCheckResult:
        """The check's result. The UI plots each numeric metadata label as one line through every evaluation of the
        check, whatever its partition, so the figure is filed under a label naming the namespace ("measured
        (demo:node)": one plot per namespace), and `measured`, which the alerts quote, is text."""
        metadata: dict[str, Any] = {
            "measured": MetadataValue.text(str(self.measured)),
            plotted_label(partition): self.measured,
            "expected": self.expected,
            "summary": self.summary,
        }
        metadata.update({key: MetadataValue.json(value) for key, value in self.details.items()})
        return AssetCheckResult(
            check_name=check_name, passed=self.passed, severity=severity, description=self.summary, metadata=metadata
        )


def plotted_label(partition: str) -> str:
    """The metadata label of a check's figure in one namespace: the label of its plot in the UI."""
    return f"measured ({partition})"


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 1.0


def _listed(names: Iterable[str]) -> list[str]:
    return sorted(names)[:_LISTED]


# --- raw metric metadata -------------------------------------------------------------------------------------------


def duplicate_names(raw: pd.DataFrame) -> Measurement:
    duplicated = set(raw.loc[raw["metric_name"].duplicated(), "metric_name"])
    return Measurement(
        passed=not duplicated,
        measured=len(duplicated),
        expected="= 0",
        summary=f"{len(duplicated)} metric names appear more than once" if duplicated else "every name appears once",
        details={"duplicates": _listed(duplicated)},
    )


def invalid_names(raw: pd.DataFrame) -> Measurement:
    """Names a PromQL query cannot use as they are (the classic `[a-zA-Z_:][a-zA-Z0-9_:]*` rule)."""
    invalid = {name for name in raw["metric_name"] if not METRIC_NAME_RE.match(str(name))}
    return Measurement(
        passed=not invalid,
        measured=len(invalid),
        expected="= 0",
        summary=f"{len(invalid)} names are not valid Prometheus metric names" if invalid else "every name is valid",
        details={"invalid": _listed(invalid)},
    )


def help_share(raw: pd.DataFrame, minimum: float) -> Measurement:
    """An empty namespace fails too: its selector most likely matches nothing."""
    without = set(raw.loc[raw["help"].fillna("").str.strip() == "", "metric_name"])
    share = round((len(raw) - len(without)) / len(raw), 4) if len(raw) else 0.0
    return Measurement(
        passed=share >= minimum,
        measured=share,
        expected=f">= {minimum}",
        summary=f"{share:.1%} of {len(raw)} metrics have help text"
        if len(raw)
        else "the namespace has no metrics: check its selector",
        details={"without_help": _listed(without)},
    )


def type_conflicts(raw: pd.DataFrame) -> Measurement:
    """Names whose targets declare different types (a counter here, a histogram there): the merge kept the most
    common type, which a query of the other targets would get wrong."""
    declared = raw[CONFLICTING_TYPES].fillna("") if CONFLICTING_TYPES in raw else pd.Series("", index=raw.index)
    conflicts = {str(name): str(types) for name, types in zip(raw["metric_name"], declared, strict=True) if types}
    return Measurement(
        passed=not conflicts,
        measured=len(conflicts),
        expected="= 0",
        summary=f"{len(conflicts)} metric names are declared with conflicting types"
        if conflicts
        else "every name has one declared type",
        details={"conflicts": dict(sorted(conflicts.items())[:_LISTED])},
    )


# --- Redis name set ------------------------------------------------------------------------------------------------


def name_set_difference(expected: set[str], stored: set[str]) -> Measurement:
    missing, extra = expected - stored, stored - expected
    return Measurement(
        passed=not missing and not extra,
        measured=len(missing) + len(extra),
        expected="= 0",
        summary=f"Redis holds {len(stored)} names, {len(expected)} expected: "
        f"{len(missing)} missing, {len(extra)} extra",
        details={"missing": _listed(missing), "extra": _listed(extra)},
    )


# --- enriched metadata ---------------------------------------------------------------------------------------------


def enrichment_success_rate(enriched: pd.DataFrame, minimum: float) -> Measurement:
    fallback = set(enriched.loc[enriched["enricher"] == FALLBACK, "metric_name"])
    rate = _share(len(enriched) - len(fallback), len(enriched))
    return Measurement(
        passed=rate >= minimum,
        measured=rate,
        expected=f">= {minimum}",
        summary=f"{rate:.1%} of {len(enriched)} metrics enriched without falling back ({len(fallback)} fallbacks)",
        details={"fallbacks": _listed(fallback)},
    )


def vocabulary_violations(enriched: pd.DataFrame) -> Measurement:
    """Every row must pass the same validation an enricher's answer passes; the fraction that does must be 1."""
    fields = list(EnrichedFields.model_fields)
    violations: dict[str, str] = {}
    for row in enriched[fields].to_dict("records"):
        try:
            EnrichedFields(**row)
        except ValidationError as error:
            violations[str(row["metric_name"])] = error.errors()[0]["msg"]
    share = _share(len(enriched) - len(violations), len(enriched))
    return Measurement(
        passed=not violations,
        measured=share,
        expected="= 1.0",
        summary=f"{len(violations)} of {len(enriched)} metrics use words outside the vocabularies",
        details={"violations": dict(sorted(violations.items())[:_LISTED])},
    )


def type_agreement(enriched: pd.DataFrame, minimum: float) -> Measurement:
    """The enricher's meter type against the type Prometheus declared, where it declared one."""
    declared = enriched[enriched["type"].isin(COMPATIBLE_METER_TYPES)]
    agrees = [
        meter in COMPATIBLE_METER_TYPES[kind]
        for kind, meter in zip(declared["type"], declared["meter_type"], strict=True)
    ]
    disagreeing = declared[[not ok for ok in agrees]]
    share = _share(sum(agrees), len(declared))
    examples = {row.metric_name: f"{row.type} -> {row.meter_type}" for row in disagreeing.head(_LISTED).itertuples()}
    return Measurement(
        passed=share >= minimum,
        measured=share,
        expected=f">= {minimum}",
        summary=f"{share:.1%} of {len(declared)} typed metrics agree with Prometheus' type",
        details={"disagreements": examples},
    )


def category_shares(enriched: pd.DataFrame) -> dict[str, float]:
    """Each category's share of the namespace, in percentage points."""
    counts = enriched["category"].value_counts()
    total = int(counts.sum())
    return {str(category): round(100 * int(n) / total, 2) for category, n in sorted(counts.items())} if total else {}


def category_drift(
    current: Mapping[str, float], previous: Mapping[str, float] | None, max_points: float
) -> Measurement:
    if previous is None:
        return Measurement(
            passed=True,
            measured=0.0,
            expected=f"<= {max_points} points",
            summary="first measurement: nothing to compare with yet",
            details={"category_shares": dict(current)},
        )
    moves = {c: round(current.get(c, 0.0) - previous.get(c, 0.0), 2) for c in sorted(set(current) | set(previous))}
    largest = max((abs(v) for v in moves.values()), default=0.0)
    moved = {c: v for c, v in moves.items() if abs(v) > max_points}
    summary = (
        f"categories moved more than {max_points} points: "
        + ", ".join(f"{c} {v:+.1f}" for c, v in sorted(moved.items(), key=lambda item: -abs(item[1])))
        if moved
        else f"largest move of a category's share: {largest:.1f} points"
    )
    return Measurement(
        passed=not moved,
        measured=largest,
        expected=f"<= {max_points} points",
        summary=summary,
        details={"category_shares": dict(current), "moves": moves},
    )


# --- Chroma semantic index -----------------------------------------------------------------------------------------


def index_consistency(expected_ids: set[str], stored_ids: set[str]) -> Measurement:
    missing, stale = expected_ids - stored_ids, stored_ids - expected_ids
    return Measurement(
        passed=not missing and not stale,
        measured=len(stored_ids),
        expected=f"= {len(expected_ids)}, no stale ids",
        summary=f"Chroma holds {len(stored_ids)} documents for {len(expected_ids)} enriched metrics: "
        f"{len(missing)} missing, {len(stale)} stale",
        details={"missing": _listed(missing), "stale": _listed(stale)},
    )


def golden_recall(queries: Sequence[GoldenQuery], ranked: Sequence[Sequence[str]], minimum: float) -> Measurement:
    """Recall@k: the share of golden queries with one of their expected metrics among the top `GOLDEN_K` answers."""
    misses = {
        q.question: list(names[:GOLDEN_K])
        for q, names in zip(queries, ranked, strict=True)
        if not set(q.expected) & set(names[:GOLDEN_K])
    }
    recall = _share(len(queries) - len(misses), len(queries))
    return Measurement(
        passed=recall >= minimum,
        measured=recall,
        expected=f">= {minimum}",
        summary=f"recall@{GOLDEN_K} {recall:.2f} over {len(queries)} golden queries"
        if queries
        else "no golden queries in the registry for this namespace",
        details={"misses": misses},
    )


# --- the Dagster checks --------------------------------------------------------------------------------------------

UNIQUE_NAMES = "unique_metric_names"
VALID_NAMES = "valid_metric_names"
HELP_SHARE = "help_text_share"
CONSISTENT_TYPES = "consistent_metric_types"
NAME_SET_MATCHES = "name_set_matches_raw"
SUCCESS_RATE = "enrichment_success_rate"
VOCABULARY = "vocabulary_valid"
TYPE_AGREEMENT = "type_agreement"
CATEGORY_DRIFT = "category_drift"
INDEX_MATCHES = "index_matches_enriched"
GOLDEN_RECALL = "golden_queries_recall"
DRIFT_KEY = AssetCheckKey(enriched_metric_metadata.key, CATEGORY_DRIFT)

ERROR, WARN = AssetCheckSeverity.ERROR, AssetCheckSeverity.WARN


def _spec(name: str, asset: Any, description: str, blocking: bool = False, **kwargs: Any) -> AssetCheckSpec:
    with warnings.catch_warnings():  # partitioned checks are a preview in Dagster 1.13, which the project pins
        warnings.simplefilter("ignore", PreviewWarning)
        return AssetCheckSpec(
            name, asset=asset, description=description, blocking=blocking, partitions_def=NAMESPACE_PARTITIONS, **kwargs
        )


@multi_asset_check(
    specs=[
        _spec(UNIQUE_NAMES, raw_metric_metadata, "ERROR: every metric name appears once.", blocking=True),
        _spec(VALID_NAMES, raw_metric_metadata, "ERROR: every name is a valid Prometheus metric name.", blocking=True),
        _spec(HELP_SHARE, raw_metric_metadata, "WARN: enough metrics have help text."),
        _spec(CONSISTENT_TYPES, raw_metric_metadata, "WARN: no metric name is declared with two types."),
    ]
)
def raw_metadata_checks(
    context: AssetCheckExecutionContext, raw_metric_metadata: pd.DataFrame, check_thresholds: CheckThresholds
) -> Iterable[AssetCheckResult]:
    raw, namespace = raw_metric_metadata, context.partition_key
    yield duplicate_names(raw).result(UNIQUE_NAMES, ERROR, namespace)
    yield invalid_names(raw).result(VALID_NAMES, ERROR, namespace)
    yield help_share(raw, check_thresholds.min_help_share).result(HELP_SHARE, WARN, namespace)
    yield type_conflicts(raw).result(CONSISTENT_TYPES, WARN, namespace)


@multi_asset_check(
    specs=[
        _spec(
            NAME_SET_MATCHES,
            metric_name_set,
            "ERROR: the Redis set holds exactly the names a query may use.",
            additional_deps=[raw_metric_metadata],
        )
    ],
    ins={"raw": AssetIn(raw_metric_metadata.key)},
)
def name_set_checks(context: AssetCheckExecutionContext, raw: pd.DataFrame, redis: RedisResource) -> AssetCheckResult:
    stored = all_names(redis.client(), context.partition_key)
    return name_set_difference(promql_names(raw), stored).result(NAME_SET_MATCHES, ERROR, context.partition_key)


@multi_asset_check(
    specs=[
        _spec(SUCCESS_RATE, enriched_metric_metadata, "WARN: few metrics needed the fallback enricher."),
        _spec(VOCABULARY, enriched_metric_metadata, "ERROR: every field is in its vocabulary.", blocking=True),
        _spec(TYPE_AGREEMENT, enriched_metric_metadata, "WARN: enriched meter types agree with Prometheus."),
        _spec(CATEGORY_DRIFT, enriched_metric_metadata, "WARN: category shares moved little since last time."),
    ]
)
def enriched_metadata_checks(
    context: AssetCheckExecutionContext, enriched_metric_metadata: pd.DataFrame, check_thresholds: CheckThresholds
) -> Iterable[AssetCheckResult]:
    enriched, limits, namespace = enriched_metric_metadata, check_thresholds, context.partition_key
    yield enrichment_success_rate(enriched, limits.min_enrichment_success_rate).result(SUCCESS_RATE, WARN, namespace)
    yield vocabulary_violations(enriched).result(VOCABULARY, ERROR, namespace)
    yield type_agreement(enriched, limits.min_type_agreement).result(TYPE_AGREEMENT, WARN, namespace)
    previous = previous_category_shares(context, DRIFT_KEY)
    drift = category_drift(category_shares(enriched), previous, limits.max_category_drift_points)
    yield drift.result(CATEGORY_DRIFT, WARN, namespace)


def previous_category_shares(context: AssetCheckExecutionContext, key: AssetCheckKey) -> dict[str, float] | None:
    """The shares the drift check recorded for this namespace in its latest earlier run, if any."""
    history = context.instance.event_log_storage.get_asset_check_execution_history(
        key, limit=10, partition_filter=PartitionKeyFilter(key=context.partition_key)
    )
    for record in history:
        evaluation = record.event.asset_check_evaluation if record.event else None
        if record.run_id != context.run.run_id and evaluation and "category_shares" in evaluation.metadata:
            return dict(evaluation.metadata["category_shares"].value)
    return None


@multi_asset_check(
    specs=[
        _spec(
            INDEX_MATCHES,
            metric_semantic_index,
            "ERROR: Chroma holds one document per enriched metric and nothing else.",
            additional_deps=[enriched_metric_metadata],
        ),
        _spec(
            GOLDEN_RECALL,
            metric_semantic_index,
            f"WARN: the golden queries (the registry's and those confirmed by feedback) find their metric in the top "
            f"{GOLDEN_K}.",
            additional_deps=[enriched_metric_metadata],
        ),
    ],
    ins={"enriched": AssetIn(enriched_metric_metadata.key)},
)
def semantic_index_checks(
    context: AssetCheckExecutionContext,
    enriched: pd.DataFrame,
    chroma: ChromaResource,
    prometheus: PrometheusResource,
    check_thresholds: CheckThresholds,
    parquet_io_manager: ResourceParam[ParquetIOManager],
) -> Iterable[AssetCheckResult]:
    """Outside the `chroma` pool: the checks only read, each read under the store's shared lock (stores/lock.py),
    which waits for a writer at most as long as the writer holds the store. In the pool, a large namespace's checks
    waited 5 to 14 s behind another run's index step, and the pool's retry interval (1 s, growing) added to each
    wait (bench/platform_throughput.py)."""
    from metrics_index.golden import GOLDEN_ASSET, golden_from_frame
    from metrics_index.search import search  # loads BM25 and the embedder: only in the step that needs them

    namespace, index = context.partition_key, chroma.index()
    expected = {document_id(namespace, name) for name in enriched["metric_name"]}
    stored = set(index.ids(namespace))
    yield index_consistency(expected, stored).result(INDEX_MATCHES, ERROR, namespace)
    confirmed = golden_from_frame(parquet_io_manager.load_partition(GOLDEN_ASSET, namespace))  # from feedback
    queries = [*prometheus.source(namespace).golden_queries, *confirmed]
    ranked = [[r.metric_name for r in search(index, namespace, q.question, k=GOLDEN_K)] for q in queries]
    yield golden_recall(queries, ranked, check_thresholds.min_golden_recall).result(GOLDEN_RECALL, WARN, namespace)


METRIC_CHECKS = [raw_metadata_checks, name_set_checks, enriched_metadata_checks, semantic_index_checks]
