"""Every knob of the Claude enricher in one object, built once (from the environment in settings.py, or by a caller)
and handed down unchanged: EnricherResource holds it, make_enricher and the enricher read it."""

from __future__ import annotations

from dagster import Config
from pydantic import Field, model_validator

from metrics_index.enrichment.claude.models import ModelPrice, merge_prices

API_KEY_VARIABLE = "ANTHROPIC_API_KEY"


class ClaudeOptions(Config):
    """The Claude enricher's settings (a Dagster config object, so the resource can hold it as one field)."""

    model: str = "claude-haiku-4-5"
    base_url: str = ""
    """Empty for Anthropic's API; a local server's URL in tests and benchmarks."""
    batch_size: int = 25
    concurrency: int = 4
    """At most this many requests at once; fewer while the account's rate limits leave no room."""
    max_retries: int = 4
    timeout_seconds: float = 120.0
    max_requests: int | None = None
    max_cost_usd: float | None = None
    deadline_seconds: float | None = 3600.0
    prices: dict[str, dict[str, float]] = Field(default_factory=dict)
    """Per model, USD per million tokens (input, output, cache_write, cache_read), laid over the default table."""
    cache_prompt: bool = True
    message_batch_threshold: int | None = 500
    """First indexing and --force runs of more metrics than this go through the Message Batches API (half price,
    answers within 24 hours, rules in the meantime); None never uses it."""

    @model_validator(mode="after")
    def _check(self) -> ClaudeOptions:
        for name in ("batch_size", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_retries < 0 or self.timeout_seconds <= 0:
            raise ValueError("max_retries must be >= 0 and timeout_seconds > 0")
        if self.model not in merge_prices(self.prices):
            raise ValueError(
                f"no price for model {self.model!r}: pass prices={{{self.model!r}: "
                "{'input': ..., 'output': ..., 'cache_write': ..., 'cache_read': ...}} (USD per million tokens)"
            )
        return self

    @property
    def price(self) -> ModelPrice:
        return merge_prices(self.prices)[self.model]
