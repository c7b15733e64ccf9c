"""Enrichment by Claude, one concern a module: models (prices, cache minimums), options, prompt, answers,
limits (the shared rate limiter), guard (budget middleware), enricher.

The enricher is imported on first use: the `anthropic` SDK takes longer to import than the rest of the project
together, and every Dagster run process, code server and CLI call imports this package for its options alone."""

from typing import Any

from metrics_index.enrichment.claude.models import DEFAULT_PRICES, ModelPrice
from metrics_index.enrichment.claude.options import API_KEY_VARIABLE, ClaudeOptions

__all__ = ["API_KEY_VARIABLE", "DEFAULT_PRICES", "ClaudeEnricher", "ClaudeOptions", "ModelPrice", "RunRejected"]


def __getattr__(name: str) -> Any:
    if name in ("ClaudeEnricher", "RunRejected"):
        from metrics_index.enrichment.claude import enricher

        return getattr(enricher, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
