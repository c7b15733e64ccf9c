"""LLM enrichment on an account with limits: the enricher before issue 9 against this one, side by side in one run.

    python bench/enrichment.py [--metrics 5000] [--speedup 100] [--quick]

Both run against the local fake Messages API (metrics_index/testing/messages_api.py) set to the published Tier 1
limits of the default model, Claude Haiku 4.5: 50 requests, 50,000 input tokens and 10,000 output tokens per
minute, output tokens charged from max_tokens when a request starts, prompt caching only above 4,096 tokens. Time
runs `--speedup` times faster than real (a rate-limit minute lasts 60/speedup seconds, and so do the modelled
latency, 0.5 s + output at 200 tokens/s, and every retry-after), so the figures are reported in simulated minutes.

(a) the enricher as it was before issue 9 (read from git at BASELINE_REF): fixed max_tokens, four threads that
    each back off alone, no limiter;
(b) this enricher: one shared rate limiter fed by the headers, max_tokens from measured answers, the first
    request alone to write the cache;
(c) the same metrics through the Message Batches API (no per-minute limits; half the price).
The minimum the limits allow is the tokens (b) needed divided by the limits. Metrics come from the bundled
snapshot, repeated with name suffixes to reach --metrics; tokens are the fake server's estimate (4 characters a
token), costs the default model's prices.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from metrics_index.enrichment.base import Enricher, EnrichmentUsage
from metrics_index.enrichment.claude import ClaudeEnricher, ClaudeOptions
from metrics_index.enrichment.claude.limits import RateLimiter
from metrics_index.enrichment.incremental import FALLBACK, enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.sources import RawMetric
from metrics_index.sources.prometheus import merge_entries, read_snapshot
from metrics_index.testing.messages_api import TIER_1, MessagesAPIServer, RateLimits

ROOT = Path(__file__).parents[1]
SNAPSHOT = ROOT / "metrics_index" / "data" / "demo-targets-metadata.json"
RESULTS = Path(__file__).parent / "ENRICHMENT_RESULTS.md"
BASELINE_REF = "e0d6630"
"""The last commit with the enricher as it was before issue 9 (metrics_index/enrichment/claude.py)."""
LATENCY_SECONDS = 0.5
OUTPUT_TOKENS_PER_SECOND = 200.0


@dataclass
class Scenario:
    label: str
    minutes: float | None
    """Simulated minutes; None for a Message Batch, which the API answers within 24 hours."""
    metrics: int
    fallbacks: int
    usage: EnrichmentUsage
    rate_limited: int

    @property
    def per_minute(self) -> float:
        return self.metrics / self.minutes if self.minutes else float("nan")


def bench_metrics(count: int) -> list[RawMetric]:
    """`count` distinct metrics: the snapshot's, then the same again with `_copyN` suffixes."""
    base = RawMetric.from_frame(merge_entries(read_snapshot(SNAPSHOT, "{}")))
    return [
        RawMetric(m.metric_name + (f"_copy{i // len(base)}" if i >= len(base) else ""), m.type, m.help, m.unit)
        for i, m in ((i, base[i % len(base)]) for i in range(count))
    ]


def baseline_module() -> ModuleType | None:
    """The enricher before issue 9, from git; None when the history is not there (a shallow clone)."""
    try:
        source = subprocess.run(
            ["git", "show", f"{BASELINE_REF}:metrics_index/enrichment/claude.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "claude_before_issue_9.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("claude_before_issue_9", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def server(speedup: float, limits: RateLimits | None = TIER_1) -> MessagesAPIServer:
    return MessagesAPIServer(
        latency=LATENCY_SECONDS / speedup,
        output_tokens_per_second=OUTPUT_TOKENS_PER_SECOND * speedup,
        limits=limits,
        minute_seconds=60 / speedup,
    )


def run_scenario(
    label: str, enricher: Enricher, raw: list[RawMetric], api: MessagesAPIServer, speedup: float
) -> Scenario:
    started = time.perf_counter()
    frame, report = enrich_catalog(raw, enricher, RulesEnricher())
    minutes = (time.perf_counter() - started) * speedup / 60
    return Scenario(
        label=label,
        minutes=minutes,
        metrics=len(raw),
        fallbacks=int((frame["enricher"] == FALLBACK).sum()),
        usage=report.usage,
        rate_limited=sum(status == 429 for status in api.statuses()),
    )


def run_batch(raw: list[RawMetric], speedup: float) -> Scenario:
    """Submit every metric as one Message Batch, let the fake end it, and collect the answers."""
    with server(speedup, limits=None) as api:
        options = ClaudeOptions(base_url=api.url, message_batch_threshold=0)
        enricher = ClaudeEnricher(options, RateLimiter(minute_seconds=60 / speedup))
        first, _ = enrich_catalog(raw, enricher, RulesEnricher())
        api.end_batches()
        frame, report = enrich_catalog(raw, enricher, RulesEnricher(), previous=first)
    fallbacks = int((frame["enricher"] == FALLBACK).sum())
    return Scenario("(c) Message Batches API, one batch", None, len(raw), fallbacks, report.usage, 0)


def run(count: int, speedup: float) -> tuple[list[Scenario], tuple[float, str]]:
    raw = bench_metrics(count)
    results = []
    module = baseline_module()
    if module is not None:
        with server(speedup) as api:
            before = module.ClaudeEnricher(module.ClaudeOptions(base_url=api.url))
            results.append(
                run_scenario("(a) before issue 9: fixed max_tokens, 4 threads, no limiter", before, raw, api, speedup)
            )
    with server(speedup) as api:
        options = ClaudeOptions(base_url=api.url, message_batch_threshold=None)
        enricher = ClaudeEnricher(options, RateLimiter(minute_seconds=60 / speedup))
        new = run_scenario("(b) shared limiter, measured max_tokens, cache first", enricher, raw, api, speedup)
        results.append(new)
    results.append(run_batch(raw, speedup))
    return results, minimum_minutes(new.usage, TIER_1)


def minimum_minutes(usage: EnrichmentUsage, limits: RateLimits) -> tuple[float, str]:
    """The shortest time the limits allow for these tokens (each need divided by its per-minute limit), and which
    limit binds."""
    needs = {
        "requests": usage.requests / limits.requests_per_minute,
        "input-token": (usage.input_tokens + usage.cache_write_tokens) / limits.input_tokens_per_minute,
        "output-token": usage.output_tokens / limits.output_tokens_per_minute,
    }
    binding = max(needs, key=needs.__getitem__)
    return needs[binding], binding


def problems(results: list[Scenario]) -> list[str]:
    """Correctness of this enricher and of the batch path, never timings."""
    new, batch = results[-2], results[-1]
    found = [f"{s.label}: {s.fallbacks} of {s.metrics} fell back" for s in (new, batch) if s.fallbacks]
    if new.usage.cache_read_tokens == 0:
        found.append(f"{new.label}: prompt caching did not engage ({new.usage.caching})")
    return found


def markdown(results: list[Scenario], minimum: tuple[float, str], speedup: float) -> str:
    count = results[0].metrics
    lines = [
        f"Enrichment of {count:,} metrics against the local fake Messages API at the Tier 1 limits of Claude Haiku 4.5 "
        f"(50 RPM, 50,000 ITPM, 10,000 OTPM), time {speedup:g}x faster than real, figures in simulated minutes "
        f"(`python bench/enrichment.py --metrics {count} --speedup {speedup:g}`).",
        "",
        "| run | wall time (min) | metrics/min | fell back | requests | 429s | input tokens | output tokens "
        "| cache reads | est. cost (USD) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results:
        u = s.usage
        wall = f"{s.minutes:,.1f} | {s.per_minute:,.0f}" if s.minutes is not None else "within 24 h | -"
        cells = [s.label, wall, f"{s.fallbacks:,}", f"{u.requests:,}", f"{s.rate_limited:,}"]
        cells += [f"{u.input_tokens + u.cache_write_tokens:,}", f"{u.output_tokens:,}", f"{u.cache_read_tokens:,}"]
        lines.append("| " + " | ".join([*cells, f"{u.cost_usd:.4f}"]) + " |")
    new = results[-2]
    lines += [
        "",
        f"Minimum the limits allow for (b)'s tokens: {minimum[0]:,.1f} min (the {minimum[1]} limit binds); "
        f"(b) took {(new.minutes or 0) / minimum[0]:.2f}x that. Caching in (b): {new.usage.caching or 'n/a'}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", type=int, default=5000, help="number of metrics (default 5000)")
    parser.add_argument("--speedup", type=float, default=100.0, help="time runs this many times faster (default 100)")
    parser.add_argument("--quick", action="store_true", help="300 metrics, 600x: a CI-sized check of correctness")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"markdown table (default {RESULTS})")
    args = parser.parse_args(argv)
    count, speedup = (300, 600.0) if args.quick else (args.metrics, args.speedup)

    os.environ["ANTHROPIC_API_KEY"] = "local-fake-api-key"  # the fake server only; never send a real key to it
    results, minimum = run(count, speedup)
    table = markdown(results, minimum, speedup)
    print(table)
    args.out.write_text(table)
    for problem in problems(results):
        print(f"WRONG: {problem}", file=sys.stderr)
    return 1 if problems(results) else 0


if __name__ == "__main__":
    sys.exit(main())
