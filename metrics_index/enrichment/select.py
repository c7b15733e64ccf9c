"""Choose the enricher from configuration: the one place that decides between Claude and the rules."""

from __future__ import annotations

import os

from metrics_index.enrichment.base import Enricher
from metrics_index.enrichment.claude import API_KEY_VARIABLE, ClaudeOptions
from metrics_index.enrichment.rules import RulesEnricher

MODES = ("auto", "claude", "rules")


def resolve_mode(mode: str) -> str:
    """The enricher a mode selects, `claude` or `rules`, without building it."""
    if mode not in MODES:
        raise ValueError(f"unknown enricher mode {mode!r}; expected one of {', '.join(MODES)}")
    has_key = bool(os.environ.get(API_KEY_VARIABLE))
    if mode == "claude" and not has_key:
        raise ValueError(f"enricher mode 'claude' needs {API_KEY_VARIABLE} in the environment; it is not set")
    return "claude" if mode != "rules" and has_key else "rules"


def make_enricher(mode: str = "auto", claude: ClaudeOptions | None = None) -> Enricher:
    """`auto` is Claude when ANTHROPIC_API_KEY is set and the rules otherwise; `claude` insists on the key.

    The key itself is never passed around: the SDK reads it from the environment."""
    if resolve_mode(mode) == "rules":
        return RulesEnricher()
    from metrics_index.enrichment.claude import ClaudeEnricher  # the SDK is imported only when it is used

    return ClaudeEnricher(claude or ClaudeOptions())
