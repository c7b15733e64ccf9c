"""Enrichment by Claude, one concern a module: prices, options, prompt, answers, guard (budget), enricher."""

from metrics_index.enrichment.claude.enricher import ClaudeEnricher
from metrics_index.enrichment.claude.options import API_KEY_VARIABLE, ClaudeOptions
from metrics_index.enrichment.claude.prices import DEFAULT_PRICES, ModelPrice, merge_prices

__all__ = ["API_KEY_VARIABLE", "DEFAULT_PRICES", "ClaudeEnricher", "ClaudeOptions", "ModelPrice", "merge_prices"]
