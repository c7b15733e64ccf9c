"""Enrich a namespace's raw metrics: reuse unchanged rows, retry earlier failures, fall back, lose nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from metrics_index.enrichment.base import Enricher, EnrichmentUsage, ProgressCallback
from metrics_index.enrichment.vocabulary import (
    CATEGORIES,
    ENRICHED_COLUMNS,
    GOLDEN_SIGNALS,
    METER_TYPES,
    PROVENANCE_COLUMNS,
    EnrichedFields,
)
from metrics_index.sources import RawMetric

FALLBACK = "fallback"
ENRICHED_FRAME_COLUMNS = (*ENRICHED_COLUMNS, *PROVENANCE_COLUMNS)


@dataclass
class EnrichmentReport:
    """Counts for the materialization metadata and the CLI summary."""

    total: int
    reused: int
    enriched: int
    failed: int
    failures: dict[str, str]
    usage: EnrichmentUsage


def input_hash(metric: RawMetric, fingerprint: str) -> str:
    """Identifies what an enrichment was computed from; equal hash means the old answer still holds."""
    payload = "\x1f".join((metric.metric_name, metric.type, metric.help, metric.unit, fingerprint))
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def enrich_catalog(
    raw: Sequence[RawMetric],
    enricher: Enricher,
    fallback: Enricher,
    previous: pd.DataFrame | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> tuple[pd.DataFrame, EnrichmentReport]:
    """One row per raw metric, sorted by name.

    A row from `previous` is reused when its input hash matches and it was not a fallback; every
    other metric goes to `enricher` (earlier fallbacks first), and whatever it fails on is enriched by
    `fallback`, marked `enricher=fallback`, with the reason in `error`.
    """
    hashes = {m.metric_name: input_hash(m, enricher.fingerprint) for m in raw}
    reusable = _reusable_rows(previous, hashes) if previous is not None and not force else {}
    if progress and reusable:
        progress(len(reusable))
    earlier_failures = set() if previous is None else set(previous.loc[previous["enricher"] == FALLBACK, "metric_name"])
    todo = sorted(
        (m for m in raw if m.metric_name not in reusable), key=lambda m: m.metric_name not in earlier_failures
    )

    outcome = enricher.enrich(todo, progress=progress) if todo else None
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows = list(reusable.values())
    failures: dict[str, str] = {}
    if outcome is not None:
        missing = {m.metric_name for m in todo} - outcome.enriched.keys() - outcome.failures.keys()
        failures = {**outcome.failures, **dict.fromkeys(missing, "the enricher returned no answer")}
        by_name = {m.metric_name: m for m in todo}
        for name, fields in outcome.enriched.items():
            if name in by_name and name not in failures:
                rows.append(_row(by_name[name], fields, enricher.name, now, hashes[name], None))
        failed_metrics = [by_name[name] for name in failures]
        rescue = fallback.enrich(failed_metrics) if failed_metrics else None
        for metric in failed_metrics:
            fields = rescue.enriched.get(metric.metric_name) if rescue else None
            fields = fields or _minimal_fields(metric)
            rows.append(_row(metric, fields, FALLBACK, now, hashes[metric.metric_name], failures[metric.metric_name]))

    frame = pd.DataFrame(rows, columns=list(ENRICHED_FRAME_COLUMNS))
    frame = frame.sort_values("metric_name", ignore_index=True)
    report = EnrichmentReport(
        total=len(raw),
        reused=len(reusable),
        enriched=len(raw) - len(reusable) - len(failures),
        failed=len(failures),
        failures=failures,
        usage=outcome.usage if outcome else EnrichmentUsage(),
    )
    return frame, report


def _reusable_rows(previous: pd.DataFrame, hashes: dict[str, str]) -> dict[str, dict]:
    reusable = {}
    for row in previous.to_dict("records"):
        name = row["metric_name"]
        if hashes.get(name) == row["input_hash"] and row["enricher"] != FALLBACK:
            reusable[name] = {column: row.get(column) for column in ENRICHED_FRAME_COLUMNS}
    return reusable


def _row(metric: RawMetric, fields: EnrichedFields, enricher: str, when: str, digest: str, error: str | None) -> dict:
    return {
        "metric_name": metric.metric_name,
        "type": metric.type,
        "description": fields.description,
        "unit": metric.unit,
        "category": fields.category,
        "subcategory": fields.subcategory,
        "category_description": CATEGORIES[fields.category].description,
        "golden_signal_type": fields.golden_signal_type,
        "golden_signal_description": fields.golden_signal_description,
        "meter_type": fields.meter_type,
        "meter_type_description": METER_TYPES[fields.meter_type],
        "enricher": enricher,
        "enriched_at": when,
        "input_hash": digest,
        "error": error,
    }


def _minimal_fields(metric: RawMetric) -> EnrichedFields:
    """Last resort when even the fallback enricher gave nothing: still index the metric."""
    meter = metric.type if metric.type in METER_TYPES else "unknown"
    return EnrichedFields(
        metric_name=metric.metric_name,
        description=metric.help or metric.metric_name.replace("_", " "),
        category="other",
        subcategory="general",
        golden_signal_type="none",
        golden_signal_description=GOLDEN_SIGNALS["none"],
        meter_type=meter,
    )
