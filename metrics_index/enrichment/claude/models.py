"""What is known per model: its price, its minimum cacheable prompt prefix, and the family that shares its limits.

Prices are USD per million tokens from Anthropic's pricing page (5-minute cache writes); the Message Batches API
bills half of them. Minimum cacheable prefixes are from Anthropic's prompt-caching page: below the minimum the API
silently caches nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

BATCH_PRICE_FACTOR = 0.5
"""Message Batches API requests cost half the standard price."""


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

CACHE_MINIMUM_TOKENS: dict[str, int] = {
    "claude-haiku-4-5": 4096,
    "claude-opus-4-5": 4096,
    "claude-opus-4-6": 4096,
    "claude-sonnet-4-5": 1024,
    "claude-sonnet-4-6": 2048,
}
"""Shortest prefix each model caches. Sonnet 4.6: the page says 1,024 but caching is reported to start at 2,048
(anthropic-sdk-python issue 1194), so the higher figure is used."""
UNKNOWN_MODEL_CACHE_MINIMUM = 4096
"""Assumed for a model not in the table: the largest published minimum, so the prefix is never too short."""

_DATE_SUFFIX = re.compile(r"-\d{8}$")


def model_alias(model: str) -> str:
    """The model name without its snapshot date (claude-haiku-4-5-20251001 -> claude-haiku-4-5)."""
    return _DATE_SUFFIX.sub("", model)


def model_family(model: str) -> str:
    """Models that draw from one set of rate limits (all Haiku, all Sonnet, all Opus models share theirs)."""
    return next((family for family in ("haiku", "sonnet", "opus") if family in model), model_alias(model))


def cache_minimum_tokens(model: str) -> int:
    return CACHE_MINIMUM_TOKENS.get(model_alias(model), UNKNOWN_MODEL_CACHE_MINIMUM)


def merge_prices(overrides: Mapping[str, Mapping[str, float] | ModelPrice] | None) -> dict[str, ModelPrice]:
    """The default table with `overrides` (plain mappings from configuration, or ModelPrice) laid over it."""
    prices = dict(DEFAULT_PRICES)
    for model, price in (overrides or {}).items():
        prices[model] = price if isinstance(price, ModelPrice) else ModelPrice(**price)
    return prices
