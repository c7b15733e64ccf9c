"""Enrichment by Claude, one concern a module: models (prices, cache minimums), options, prompt, answers,
limits (the shared rate limiter), guard (budget middleware), enricher."""

from metrics_index.enrichment.claude.enricher import ClaudeEnricher, RunRejected
from metrics_index.enrichment.claude.models import DEFAULT_PRICES, ModelPrice
from metrics_index.enrichment.claude.options import API_KEY_VARIABLE, ClaudeOptions

__all__ = ["API_KEY_VARIABLE", "DEFAULT_PRICES", "ClaudeEnricher", "ClaudeOptions", "ModelPrice", "RunRejected"]
