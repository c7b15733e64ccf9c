"""The run's budget and deadline, enforced inside the SDK's retry loop."""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Mapping
from typing import Any

import anthropic

from metrics_index.enrichment.base import EnrichmentUsage
from metrics_index.enrichment.claude.options import ClaudeOptions


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


class RunGuard(anthropic.Middleware):
    """Runs inside the SDK's retry loop, once per HTTP attempt: counts requests and retries, enforces the
    run's budget, and bounds each attempt by the deadline.

    The SDK already retries 408/409/429/5xx/529 and timeouts with exponential backoff and jitter, and honours
    retry-after — however long it is. What it lacks is a per-run view: this stops before a request the budget
    cannot pay for, and refuses a retry-after that ends past the deadline instead of sleeping through it.
    """

    def __init__(self, options: ClaudeOptions) -> None:
        self.options = options
        self.usage = EnrichmentUsage()
        self._lock = threading.Lock()
        self._deadline = None if options.deadline_seconds is None else time.monotonic() + options.deadline_seconds
        self._stopped: str | None = None

    def handle(self, request: anthropic.APIRequest, call_next: anthropic.CallNext) -> anthropic.APIResponse[Any]:
        with self._lock:
            reason = self._exhausted()
            if reason:
                raise RunStopped(reason)
            self.usage.requests += 1
            self.usage.retries += int(request.retries_taken > 0)
        left = self.seconds_left()
        if left is not None and left < self.options.timeout_seconds:
            request = request.copy(timeout=max(left, 0.001))
        response = call_next(request)
        wait = retry_after_seconds(response.headers)
        retryable = response.status_code == 429 or response.status_code >= 500
        if retryable and wait is not None and left is not None and request.retries_taken < self.options.max_retries:
            left = self.seconds_left() or 0.0
            if wait > left:
                response.close()
                raise RunStopped(
                    f"HTTP {response.status_code}: the API asked to wait {wait:.0f}s, past the run deadline"
                )
        return response

    def seconds_left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def stop(self, reason: str) -> None:
        with self._lock:
            self._stopped = self._stopped or reason

    def record(self, message: anthropic.types.Message) -> None:
        """Add a reply's tokens and their cost. The SDK does not validate replies: a missing count is zero."""
        usage = getattr(message, "usage", None)
        fields = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        counts = [value if isinstance(value := getattr(usage, name, 0), int) else 0 for name in fields]
        input_tokens, output_tokens, cache_write, cache_read = counts
        with self._lock:
            self.usage.input_tokens += input_tokens
            self.usage.output_tokens += output_tokens
            self.usage.cache_write_tokens += cache_write
            self.usage.cache_read_tokens += cache_read
            self.usage.cost_usd += self.options.price.cost(input_tokens, output_tokens, cache_write, cache_read)

    def _exhausted(self) -> str | None:
        options, usage = self.options, self.usage
        if self._stopped:
            return self._stopped
        if options.max_requests is not None and usage.requests >= options.max_requests:
            return f"run budget spent: {options.max_requests} requests sent"
        if options.max_cost_usd is not None and usage.cost_usd >= options.max_cost_usd:
            return f"run budget spent: ${usage.cost_usd:.4f} of ${options.max_cost_usd:g}"
        left = self.seconds_left()
        if left is not None and left <= 0:
            return f"run deadline of {options.deadline_seconds:g}s passed"
        return None
