"""Every knob of the Claude enricher in one frozen object, validated once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from metrics_index.enrichment.claude.prices import DEFAULT_PRICES, ModelPrice

API_KEY_VARIABLE = "ANTHROPIC_API_KEY"


@dataclass(frozen=True)
class ClaudeOptions:
    """Every knob of the Claude enricher, with the defaults `make_enricher` exposes."""

    model: str = "claude-haiku-4-5"
    base_url: str | None = None
    batch_size: int = 25
    concurrency: int = 4
    max_retries: int = 4
    timeout_seconds: float = 120.0
    max_requests: int | None = None
    max_cost_usd: float | None = None
    deadline_seconds: float | None = 3600.0
    prices: Mapping[str, ModelPrice] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    cache_prompt: bool = True

    def __post_init__(self) -> None:
        for name in ("batch_size", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_retries < 0 or self.timeout_seconds <= 0:
            raise ValueError("max_retries must be >= 0 and timeout_seconds > 0")
        if self.model not in self.prices:
            raise ValueError(
                f"no price for model {self.model!r}: pass prices={{{self.model!r}: "
                "{'input': ..., 'output': ..., 'cache_write': ..., 'cache_read': ...}} (USD per million tokens)"
            )

    @property
    def price(self) -> ModelPrice:
        return self.prices[self.model]
