"""What each model's tokens cost, so a run can account for and budget its spending."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


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
