"""Enrichment by Claude: many metrics per request, several requests at once, validated per metric.

Help text comes from exporters and is untrusted: it travels as escaped JSON inside a delimited data block,
every answer is checked against the vocabularies and accepted only for a metric of its own request, and
help that reads like instructions is sent in a request of its own, so it can at worst mislabel itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens, as on Anthropic's pricing page (5-minute cache writes)."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    def cost(self, input_tokens: int, output_tokens: int, cache_write_tokens: int, cache_read_tokens: int) -> float:
        return (
            input_tokens * self.input
            + output_tokens * self.output
            + cache_write_tokens * self.cache_write
            + cache_read_tokens * self.cache_read
        ) / 1_000_000


_HAIKU_4 = ModelPrice(input=1.0, output=5.0, cache_write=1.25, cache_read=0.10)
_SONNET_4 = ModelPrice(input=3.0, output=15.0, cache_write=3.75, cache_read=0.30)
_OPUS_4_5 = ModelPrice(input=5.0, output=25.0, cache_write=6.25, cache_read=0.50)

DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-haiku-4-5": _HAIKU_4,
    "claude-haiku-4-5-20251001": _HAIKU_4,
    "claude-sonnet-4-5": _SONNET_4,
    "claude-sonnet-4-5-20250929": _SONNET_4,
    "claude-sonnet-4-6": _SONNET_4,
    "claude-opus-4-5": _OPUS_4_5,
    "claude-opus-4-5-20251101": _OPUS_4_5,
    "claude-opus-4-6": _OPUS_4_5,
}
"""Prices checked for these models; any other model needs its price passed in `prices`."""


def merge_prices(overrides: Mapping[str, Mapping[str, float] | ModelPrice] | None) -> dict[str, ModelPrice]:
    """The default table with `overrides` (plain mappings from configuration, or ModelPrice) laid over it."""
    prices = dict(DEFAULT_PRICES)
    for model, price in (overrides or {}).items():
        prices[model] = price if isinstance(price, ModelPrice) else ModelPrice(**price)
    return prices


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
