"""LLM enrichment: the original job's one call per metric against this project's Claude enricher.

    python bench/enrichment.py [--metrics 1000] [--latency 0.4] [--output-tokens-per-second 0]

Runs against the local fake Messages API (metrics_index/testing/messages_api.py) with a fixed latency
per request, so no key and no network are needed and the figures show the request pattern, not a model:
(a) one request per metric, one after the other, no prompt caching (the original job's way);
(b) this enricher: batches, concurrent requests, cached system prompt;
(c) this enricher again over the unchanged metrics, with (b)'s catalog as the previous materialization.
Metrics come from the bundled snapshot, repeated with name suffixes to reach --metrics. Tokens are the fake
server's estimate (4 characters a token); costs use the default model's prices. A real model's latency grows
with the tokens it writes: --output-tokens-per-second adds that to each reply.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from metrics_index.enrichment.base import Enricher
from metrics_index.enrichment.claude import ClaudeEnricher, ClaudeOptions
from metrics_index.enrichment.incremental import enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.sources import RawMetric
from metrics_index.sources.prometheus import merge_entries, read_snapshot
from metrics_index.testing.messages_api import MessagesAPIServer

SNAPSHOT = Path(__file__).parents[1] / "metrics_index" / "data" / "demo-targets-metadata.json"
RESULTS = Path(__file__).parent / "ENRICHMENT_RESULTS.md"


@dataclass
class Scenario:
    label: str
    seconds: float
    metrics: int
    requests: int
    input_tokens: int
    cached_tokens: int
    cost_usd: float
    by_claude: int
    reused: int

    @property
    def per_second(self) -> float:
        return self.metrics / self.seconds if self.seconds else float("inf")

    @property
    def input_per_metric(self) -> float:
        return self.input_tokens / self.metrics


def bench_metrics(count: int) -> list[RawMetric]:
    """`count` distinct metrics: the snapshot's, then the same again with `_copyN` suffixes."""
    base = RawMetric.from_frame(merge_entries(read_snapshot(SNAPSHOT, "{}")))
    return [
        RawMetric(m.metric_name + (f"_copy{i // len(base)}" if i >= len(base) else ""), m.type, m.help, m.unit)
        for i, m in ((i, base[i % len(base)]) for i in range(count))
    ]


def run_scenario(
    label: str, enricher: Enricher, raw: list[RawMetric], previous: pd.DataFrame | None = None
) -> tuple[Scenario, pd.DataFrame]:
    started = time.perf_counter()
    frame, report = enrich_catalog(raw, enricher, RulesEnricher(), previous=previous)
    seconds = time.perf_counter() - started
    usage = report.usage
    scenario = Scenario(
        label=label,
        seconds=seconds,
        metrics=len(raw),
        requests=usage.requests,
        input_tokens=usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens,
        cached_tokens=usage.cache_read_tokens,
        cost_usd=usage.cost_usd,
        by_claude=int((frame["enricher"] == "claude").sum()),
        reused=report.reused,
    )
    return scenario, frame


def run(count: int, latency: float, output_tps: float, batch_size: int, concurrency: int) -> list[Scenario]:
    raw = bench_metrics(count)
    with MessagesAPIServer(latency, output_tps) as server:
        one_by_one = ClaudeEnricher(ClaudeOptions(base_url=server.url, batch_size=1, concurrency=1, cache_prompt=False))
        a, _ = run_scenario("(a) one call per metric, sequential", one_by_one, raw)
    with MessagesAPIServer(latency, output_tps) as server:
        batched = ClaudeEnricher(ClaudeOptions(base_url=server.url, batch_size=batch_size, concurrency=concurrency))
        b, frame = run_scenario(f"(b) batches of {batch_size}, {concurrency} at once, cached prompt", batched, raw)
        c, _ = run_scenario("(c) (b) again, nothing changed", batched, raw, previous=frame)
    return [a, b, c]


def problems(results: list[Scenario]) -> list[str]:
    """Correctness, never timings: every metric enriched by Claude, and the rerun made no call."""
    a, b, c = results
    found = [f"{s.label}: {s.by_claude} of {s.metrics} enriched by Claude" for s in (a, b) if s.by_claude != s.metrics]
    if c.requests or c.reused != c.metrics:
        found.append(f"{c.label}: {c.requests} requests, {c.reused} of {c.metrics} reused")
    return found


def markdown(results: list[Scenario], latency: float, output_tps: float) -> str:
    a, b, _ = results
    speed = f", plus output at {output_tps:g} tokens/s" if output_tps else ""
    flag = f" --output-tokens-per-second {output_tps:g}" if output_tps else ""
    lines = [
        f"Enrichment of {a.metrics} metrics against the local fake Messages API, {latency * 1000:g} ms a request"
        f"{speed} (`python bench/enrichment.py --metrics {a.metrics} --latency {latency:g}{flag}`).",
        "",
        "| run | wall time | metrics/s | requests | input tokens/metric | of which cache reads | est. cost (USD) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {s.label} | {s.seconds:.2f} s | {s.per_second:,.1f} | {s.requests:,} | {s.input_per_metric:,.0f} "
        f"| {s.cached_tokens / s.metrics:,.0f} | {s.cost_usd:.4f} |"
        for s in results
    ]
    lines += [
        "",
        f"(a)/(b): wall time {a.seconds / b.seconds:.1f}x, requests {a.requests / b.requests:.1f}x, "
        f"input tokens per metric {a.input_per_metric / b.input_per_metric:.1f}x, "
        f"estimated cost {a.cost_usd / b.cost_usd:.1f}x.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", type=int, default=1000, help="number of metrics (default 1000)")
    parser.add_argument("--latency", type=float, default=0.4, help="seconds per request (default 0.4)")
    parser.add_argument("--output-tokens-per-second", type=float, default=0.0, help="0: replies take no time")
    parser.add_argument("--batch-size", type=int, default=ClaudeOptions().batch_size)
    parser.add_argument("--concurrency", type=int, default=ClaudeOptions().concurrency)
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"markdown table (default {RESULTS})")
    args = parser.parse_args(argv)

    os.environ["ANTHROPIC_API_KEY"] = "local-fake-api-key"  # the fake server only; never send a real key to it
    results = run(args.metrics, args.latency, args.output_tokens_per_second, args.batch_size, args.concurrency)
    table = markdown(results, args.latency, args.output_tokens_per_second)
    print(table)
    args.out.write_text(table)
    for problem in problems(results):
        print(f"WRONG: {problem}", file=sys.stderr)
    return 1 if problems(results) else 0


if __name__ == "__main__":
    sys.exit(main())
