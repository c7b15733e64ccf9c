"""Choose the enricher from configuration: the one place that decides between Claude and the rules."""

from __future__ import annotations

import os
from collections.abc import Mapping

from metrics_index.enrichment.base import Enricher
from metrics_index.enrichment.claude import API_KEY_VARIABLE, ClaudeEnricher, ClaudeOptions, merge_prices
from metrics_index.enrichment.rules import RulesEnricher

MODES = ("auto", "claude", "rules")
_DEFAULTS = ClaudeOptions()


def resolve_mode(mode: str) -> str:
    """The enricher a mode selects, `claude` or `rules`, without building it."""
    if mode not in MODES:
        raise ValueError(f"unknown enricher mode {mode!r}; expected one of {', '.join(MODES)}")
    has_key = bool(os.environ.get(API_KEY_VARIABLE))
    if mode == "claude" and not has_key:
        raise ValueError(f"enricher mode 'claude' needs {API_KEY_VARIABLE} in the environment; it is not set")
    return "claude" if mode != "rules" and has_key else "rules"


def make_enricher(
    mode: str = "auto",
    *,
    model: str = _DEFAULTS.model,
    base_url: str | None = _DEFAULTS.base_url,
    batch_size: int = _DEFAULTS.batch_size,
    concurrency: int = _DEFAULTS.concurrency,
    max_retries: int = _DEFAULTS.max_retries,
    timeout_seconds: float = _DEFAULTS.timeout_seconds,
    max_requests: int | None = _DEFAULTS.max_requests,
    max_cost_usd: float | None = _DEFAULTS.max_cost_usd,
    deadline_seconds: float | None = _DEFAULTS.deadline_seconds,
    prices: Mapping[str, Mapping[str, float]] | None = None,
) -> Enricher:
    """`auto` is Claude when ANTHROPIC_API_KEY is set and the rules otherwise; `claude` insists on the key.

    `prices` (USD per million tokens: input, output, cache_write, cache_read) is laid over the default
    table. The key itself is never passed around: the SDK reads it from the environment.
    """
    if resolve_mode(mode) == "rules":
        return RulesEnricher()

    options = ClaudeOptions(
        model=model,
        base_url=base_url,
        batch_size=batch_size,
        concurrency=concurrency,
        max_retries=max_retries,
        timeout_seconds=timeout_seconds,
        max_requests=max_requests,
        max_cost_usd=max_cost_usd,
        deadline_seconds=deadline_seconds,
        prices=merge_prices(prices),
    )
    return ClaudeEnricher(options)
