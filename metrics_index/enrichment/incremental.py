"""Enrich a namespace's raw metrics: reuse unchanged rows, retry earlier failures, fall back, lose nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from metrics_index.enrichment.base import (
    Collected,
    DeferredEnricher,
    Enricher,
    EnrichmentUsage,
    ProgressCallback,
    Ticket,
)
from metrics_index.enrichment.vocabulary import (
    CATEGORIES,
    ENRICHED_COLUMNS,
    GOLDEN_SIGNALS,
    METER_TYPES,
    PROVENANCE_COLUMNS,
    EnrichedFields,
)
from metrics_index.secrets import redact
from metrics_index.sources import RawMetric
from metrics_index.units import unit_of

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
    awaiting: int = 0
    """Rows that hold the fallback's answer until a submitted batch is collected."""
    batches: list[str] = field(default_factory=list)
    """The batches those rows wait on; a sensor materializes the namespace again when one has ended."""


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

    A row from `previous` is reused when its input hash matches and it was not a fallback; a row waiting on a
    batch is collected when the batch has ended (kept as it is while it runs); every other metric goes to
    `enricher` (earlier failures first) — or, when the enricher defers (a first or forced run of many metrics),
    into a batch, its row holding the fallback's answer meanwhile. Whatever the enricher fails on is enriched by
    `fallback`, marked `enricher=fallback`, with the reason in `error`.
    """
    hashes = {m.metric_name: input_hash(m, enricher.fingerprint) for m in raw}
    by_name = {m.metric_name: m for m in raw}
    old = {} if previous is None or force else {row["metric_name"]: row for row in previous.to_dict("records")}
    tickets = {
        name: ticket
        for name, row in old.items()
        if (ticket := Ticket.parse(row.get("error"))) and hashes.get(name) == row["input_hash"]
    }
    deferred = enricher if isinstance(enricher, DeferredEnricher) else None
    collected = deferred.collect(tickets, by_name) if deferred and tickets else Collected()
    kept = {
        name: _kept(row)
        for name, row in old.items()
        if name in collected.waiting or (name not in tickets and _reusable(row, hashes))
    }
    if progress and kept:
        progress(len(kept))
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows = list(kept.values())
    rows += [_row(by_name[n], f, enricher.name, now, hashes[n], None) for n, f in collected.enriched.items()]
    done = kept.keys() | collected.enriched.keys()
    earlier = set() if previous is None else set(previous.loc[previous["enricher"] == FALLBACK, "metric_name"])
    retry_first = collected.failures.keys() | earlier
    todo = sorted((m for m in raw if m.metric_name not in done), key=lambda m: m.metric_name not in retry_first)

    first_run = previous is None or force or bool(collected.failures)
    usage = collected.usage
    failures: dict[str, str] = {}
    fresh = len(collected.enriched)
    if todo and deferred and deferred.defers(len(todo), first_run):
        submitted = deferred.submit(todo)
        rows += _fallback_rows(todo, fallback, now, hashes, {n: t.text() for n, t in submitted.items()}, fallback.name)
        if progress:
            progress(len(todo))
    elif todo:
        outcome = enricher.enrich(todo, progress=progress)
        usage = usage.add(outcome.usage)
        missing = {m.metric_name for m in todo} - outcome.enriched.keys() - outcome.failures.keys()
        failures = {name: redact(reason) for name, reason in outcome.failures.items()}  # stored and printed
        failures.update(dict.fromkeys(missing, "the enricher returned no answer"))
        for name, fields in outcome.enriched.items():
            if name in by_name and name not in failures:
                rows.append(_row(by_name[name], fields, enricher.name, now, hashes[name], None))
        fresh += len(todo) - len(failures)
        failed = [by_name[name] for name in failures]
        rows += _fallback_rows(failed, fallback, now, hashes, failures, FALLBACK)

    frame = pd.DataFrame(rows, columns=list(ENRICHED_FRAME_COLUMNS))
    frame = frame.sort_values("metric_name", ignore_index=True)
    waiting = [ticket for value in frame["error"] if (ticket := Ticket.parse(value))]
    report = EnrichmentReport(
        total=len(raw),
        reused=len(kept),
        enriched=fresh,
        failed=len(failures),
        failures=failures,
        usage=usage,
        awaiting=len(waiting),
        batches=sorted({ticket.batch_id for ticket in waiting}),
    )
    return frame, report


def _reusable(row: dict, hashes: dict[str, str]) -> bool:
    return hashes.get(row["metric_name"]) == row["input_hash"] and row["enricher"] != FALLBACK


def _kept(row: dict) -> dict:
    return {column: row.get(column) for column in ENRICHED_FRAME_COLUMNS}


def _fallback_rows(
    metrics: Sequence[RawMetric],
    fallback: Enricher,
    when: str,
    hashes: dict[str, str],
    reasons: dict[str, str],
    label: str,
) -> list[dict]:
    """Rows answered by the fallback enricher (or, should it give nothing, minimal fields), with their reason."""
    rescue = fallback.enrich(metrics) if metrics else None
    return [
        _row(
            metric,
            (rescue.enriched.get(metric.metric_name) if rescue else None) or _minimal_fields(metric),
            label,
            when,
            hashes[metric.metric_name],
            reasons[metric.metric_name],
        )
        for metric in metrics
    ]


def _row(metric: RawMetric, fields: EnrichedFields, enricher: str, when: str, digest: str, error: str | None) -> dict:
    return {
        "metric_name": metric.metric_name,
        "type": metric.type,
        "description": fields.description,
        "unit": fields.unit,
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
        unit=unit_of(metric.metric_name, metric.unit, metric.help),
    )
