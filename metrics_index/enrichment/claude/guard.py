"""The run's guard inside the SDK's retry loop: budget, deadline and the shared rate limits, once per HTTP attempt."""

from __future__ import annotations

import email.utils
import json
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

import anthropic

from metrics_index.enrichment.base import EnrichmentUsage
from metrics_index.enrichment.claude.limits import RateLimiter, RateLimitWaitTooLong
from metrics_index.enrichment.claude.models import BATCH_PRICE_FACTOR
from metrics_index.enrichment.claude.options import ClaudeOptions

DEFAULT_PAUSE_SECONDS = 1.0
"""How long everyone pauses after a 429 that names no retry-after."""


class RunStopped(RuntimeError):
    """No more requests in this run: budget or deadline spent, or the API refused the credentials."""


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait an API response asks for (retry-after-ms, retry-after in seconds or as an HTTP date)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) * scale
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return email.utils.mktime_tz(parsed) - time.time()
    return None


class InputTokenEstimate:
    """Input tokens a request will be charged against the per-minute input limit, known before it is sent.

    Characters times a tokens-per-character ratio measured on earlier answers; the cached prefix stops counting
    once an answer reports reading it (cache reads do not count towards the input limit)."""

    def __init__(self) -> None:
        self.tokens_per_char = 1 / 3
        self.prefix_tokens: int | None = None
        self.prefix_cached = False
        self._lock = threading.Lock()

    def estimate(self, body: Mapping[str, Any]) -> int:
        prefix_chars, message_chars = _sizes(body)
        with self._lock:
            prefix = 0.0 if self.prefix_cached else self.prefix_tokens or prefix_chars * self.tokens_per_char
            return math.ceil(prefix + message_chars * self.tokens_per_char * 1.1)

    def observe(self, body: Mapping[str, Any], usage: Mapping[str, Any]) -> None:
        prefix_chars, message_chars = _sizes(body)
        uncached, written, read = (_count(usage, key) for key in _INPUT_USAGE)
        with self._lock:
            if written or read:
                self.prefix_tokens = written or read
                self.prefix_cached = read > 0 or self.prefix_cached
                chars = message_chars
            else:
                chars = prefix_chars + message_chars
            if uncached and chars:
                self.tokens_per_char = uncached / chars


_INPUT_USAGE = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def _sizes(body: Mapping[str, Any]) -> tuple[int, int]:
    prefix = len(json.dumps(body.get("system", ""))) + len(json.dumps(body.get("tools", [])))
    return prefix, len(json.dumps(body.get("messages", [])))


def _count(usage: Mapping[str, Any] | Any, key: str) -> int:
    value = usage.get(key, 0) if isinstance(usage, Mapping) else getattr(usage, key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class RunGuard(anthropic.Middleware):
    """Runs inside the SDK's retry loop, once per HTTP attempt: counts requests and retries, enforces the run's
    budget, bounds each attempt by the deadline, and sends a Messages request only when the shared rate limits
    leave room for it (its estimated input tokens and its max_tokens).

    The SDK already retries 408/409/429/5xx/529 and timeouts with exponential backoff and jitter, and honours
    retry-after — however long it is, and in each thread alone. This adds the per-run view: stop before a request
    the budget cannot pay for, refuse a retry-after that ends past the deadline instead of sleeping through it, and
    on a 429 pause every worker of the process, not only the one that got it.
    """

    def __init__(self, options: ClaudeOptions, limiter: RateLimiter, estimate: InputTokenEstimate) -> None:
        self.options = options
        self.limiter = limiter
        self.estimate = estimate
        self.usage = EnrichmentUsage()
        self._lock = threading.Lock()
        self._deadline = None if options.deadline_seconds is None else time.monotonic() + options.deadline_seconds
        self._stopped: str | None = None
        self._reserved_cost = 0.0

    def handle(self, request: anthropic.APIRequest, call_next: anthropic.CallNext) -> anthropic.APIResponse[Any]:
        body = request.json if request.method.lower() == "post" and request.url.endswith("/messages") else None
        body = body if isinstance(body, dict) else None
        max_tokens = int(body.get("max_tokens", 0)) if body else 0
        estimate = self.estimate.estimate(body) if body else 0
        worst_cost = self.options.price.cost(0, max_tokens, estimate, 0)
        with self._lock:
            reason = self._exhausted(worst_cost)
            if reason:
                raise RunStopped(reason)
            self.usage.requests += 1
            self.usage.retries += int(request.retries_taken > 0)
            self._reserved_cost += worst_cost
        try:
            return self._send(request, call_next, body, max_tokens, estimate)
        finally:
            with self._lock:
                self._reserved_cost -= worst_cost

    def _send(
        self,
        request: anthropic.APIRequest,
        call_next: anthropic.CallNext,
        body: dict[str, Any] | None,
        max_tokens: int,
        estimate: int,
    ) -> anthropic.APIResponse[Any]:
        if body is not None:
            try:
                self.limiter.acquire(estimate, max_tokens, self._deadline)
            except RateLimitWaitTooLong as error:
                raise RunStopped(str(error)) from None
        left = self.seconds_left()
        if left is not None and left < self.options.timeout_seconds:
            request = request.copy(timeout=max(left, 0.001))
        try:
            response = call_next(request)
        except BaseException:
            self.limiter.release_output(max_tokens)
            raise
        wait = retry_after_seconds(response.headers)
        if body is not None:
            self._settle(body, max_tokens, response, wait)
        retryable = response.status_code == 429 or response.status_code >= 500
        if retryable and wait is not None and left is not None and request.retries_taken < self.options.max_retries:
            left = self.seconds_left() or 0.0
            if wait > left:
                response.close()
                raise RunStopped(
                    f"HTTP {response.status_code}: the API asked to wait {wait:.0f}s, past the run deadline"
                )
        return response

    def _settle(
        self, body: dict[str, Any], max_tokens: int, response: anthropic.APIResponse[Any], wait: float | None
    ) -> None:
        """Account the answer's usage, return unused output tokens, learn from the headers, pause after a 429."""
        unused = max_tokens
        if response.status_code == 200:
            usage = _usage_of(response)
            self.record(usage)
            unused = max_tokens - _count(usage, "output_tokens")
            self.estimate.observe(body, usage)
        self.limiter.release_output(unused)
        self.limiter.observe(response.headers)
        if response.status_code == 429:
            with self._lock:
                self.usage.rate_limited += 1
            self.limiter.pause(wait if wait is not None and wait > 0 else DEFAULT_PAUSE_SECONDS)

    def seconds_left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def stop(self, reason: str) -> None:
        with self._lock:
            self._stopped = self._stopped or reason

    def record(self, usage: Mapping[str, Any] | Any, batch_price: bool = False) -> None:
        """Add an answer's tokens and their cost. Nothing about a reply is taken for granted: a missing count is 0."""
        input_tokens, output_tokens, cache_write, cache_read = (
            _count(usage, name) for name in ("input_tokens", "output_tokens", *_INPUT_USAGE[1:])
        )
        cost = self.options.price.cost(input_tokens, output_tokens, cache_write, cache_read)
        with self._lock:
            self.usage.input_tokens += input_tokens
            self.usage.output_tokens += output_tokens
            self.usage.cache_write_tokens += cache_write
            self.usage.cache_read_tokens += cache_read
            self.usage.cost_usd += cost * (BATCH_PRICE_FACTOR if batch_price else 1.0)
            if self.options.cache_prompt and not batch_price and not (cache_write or cache_read):
                self.usage.answers_without_cache += 1

    def _exhausted(self, next_cost: float) -> str | None:
        """Why no request may start now; the cost budget counts the worst case of the requests in flight."""
        options, usage = self.options, self.usage
        if self._stopped:
            return self._stopped
        if options.max_requests is not None and usage.requests >= options.max_requests:
            return f"run budget spent: {options.max_requests} requests sent"
        committed = usage.cost_usd + self._reserved_cost + next_cost
        if options.max_cost_usd is not None and committed > options.max_cost_usd:
            return (
                f"run budget spent: ${usage.cost_usd:.4f} of ${options.max_cost_usd:g} "
                f"(the next request could cost up to ${next_cost:.4f})"
            )
        left = self.seconds_left()
        if left is not None and left <= 0:
            return f"run deadline of {options.deadline_seconds:g}s passed"
        return None


def _usage_of(response: anthropic.APIResponse[Any]) -> Mapping[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    usage = body.get("usage") if isinstance(body, dict) else None
    return usage if isinstance(usage, dict) else {}
