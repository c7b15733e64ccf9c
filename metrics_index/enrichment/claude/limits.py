"""The account's per-minute limits as one budget shared by every request the process sends.

Anthropic limits an organization per model family by requests, input tokens and output tokens per minute, with
token buckets that refill continuously; output tokens are charged from `max_tokens` when a request starts and the
unused part is returned when it ends. One `RateLimiter` per process and API mirrors those buckets: a worker waits
until its request fits, every answer's `anthropic-ratelimit-*` headers correct the local view (so requests of
other processes on the same account are accounted for), and a 429 pauses every worker until its `retry-after`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from metrics_index.enrichment.claude.models import model_family

LIMITS = ("requests", "input-tokens", "output-tokens")
"""The middle part of the anthropic-ratelimit-{name}-{limit,remaining,reset} headers."""
DEFAULT_API = "https://api.anthropic.com"


class RateLimitWaitTooLong(RuntimeError):
    """The wait for room under the limits would end past the run's deadline."""


class TokenBucket:
    """One limit: unknown (no waiting) until an answer's headers state it, then refilled continuously."""

    def __init__(self, minute_seconds: float) -> None:
        self.minute_seconds = minute_seconds
        self.limit: int | None = None
        self.level = 0.0
        self._updated = time.monotonic()

    def refill(self, now: float) -> None:
        if self.limit is not None:
            self.level = min(float(self.limit), self.level + (now - self._updated) * self.limit / self.minute_seconds)
        self._updated = now

    def seconds_until(self, amount: float) -> float:
        """How long until `amount` fits (a request larger than the whole limit waits for a full bucket)."""
        if self.limit is None:
            return 0.0
        return max(0.0, (min(amount, self.limit) - self.level) * self.minute_seconds / self.limit)

    def observe(self, limit: int, remaining: int) -> None:
        """What the API says: trust its limit, and never believe there is more left than it reports."""
        self.level = float(remaining) if self.limit is None else min(self.level, float(remaining))
        self.limit = limit


@dataclass
class LimiterStats:
    waits: int = 0
    waited_seconds: float = 0.0
    pauses: int = 0


class RateLimiter:
    """Requests, input tokens and output tokens per minute for one API and model family, shared by threads."""

    def __init__(self, minute_seconds: float = 60.0) -> None:
        self.minute_seconds = minute_seconds
        self.stats = LimiterStats()
        self._buckets = {name: TokenBucket(minute_seconds) for name in LIMITS}
        self._paused_until = 0.0
        self._condition = threading.Condition()

    def limits(self) -> dict[str, int | None]:
        with self._condition:
            return {name: bucket.limit for name, bucket in self._buckets.items()}

    def acquire(self, input_tokens: int, output_tokens: int, give_up_at: float | None = None) -> None:
        """Wait until one request of this size fits under all three limits and no pause is on, then charge it."""
        wanted = {"requests": 1, "input-tokens": input_tokens, "output-tokens": output_tokens}
        waited = False
        started = time.monotonic()
        with self._condition:
            while True:
                now = time.monotonic()
                for bucket in self._buckets.values():
                    bucket.refill(now)
                wait = max(self._paused_until - now, *(self._buckets[n].seconds_until(a) for n, a in wanted.items()))
                if wait <= 0:
                    for name, amount in wanted.items():
                        self._buckets[name].level -= amount
                    if waited:
                        self.stats.waits += 1
                        self.stats.waited_seconds += now - started
                    return
                if give_up_at is not None and now + wait > give_up_at:
                    raise RateLimitWaitTooLong(
                        f"the rate limits leave no room for {math.ceil(wait)}s, past the deadline"
                    )
                waited = True
                self._condition.wait(wait)

    def release_output(self, tokens: int) -> None:
        """Give back output tokens reserved through max_tokens but not written (the API does the same)."""
        if tokens <= 0:
            return
        with self._condition:
            bucket = self._buckets["output-tokens"]
            bucket.refill(time.monotonic())
            if bucket.limit is not None:
                bucket.level = min(float(bucket.limit), bucket.level + tokens)
            self._condition.notify_all()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn the limits and what is left from an answer's anthropic-ratelimit-* headers."""
        with self._condition:
            now = time.monotonic()
            for name, bucket in self._buckets.items():
                limit = _int(headers.get(f"anthropic-ratelimit-{name}-limit"))
                remaining = _int(headers.get(f"anthropic-ratelimit-{name}-remaining"))
                if limit is not None and remaining is not None:
                    bucket.refill(now)
                    bucket.observe(limit, remaining)
            self._condition.notify_all()

    def pause(self, seconds: float) -> None:
        """A 429: nobody sends until the API's retry-after has passed."""
        with self._condition:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
            self.stats.pauses += 1
            self._condition.notify_all()


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


_LIMITERS: dict[tuple[str, str], RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter_for(base_url: str, model: str) -> RateLimiter:
    """The process's one limiter for this API and model family (Haiku, Sonnet and Opus models share theirs)."""
    key = (base_url.rstrip("/") or DEFAULT_API, model_family(model))
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault(key, RateLimiter())
