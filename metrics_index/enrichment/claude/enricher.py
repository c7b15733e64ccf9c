"""Enrichment by Claude: many metrics per request, several requests at once within the account's rate limits,
validated per metric.

Help text comes from exporters and is untrusted: it travels as escaped JSON inside a delimited data block,
every answer is checked against the vocabularies and accepted only for a metric of its own request, and
help that reads like instructions is sent in a request of its own, so it can at worst mislabel itself.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import anthropic

from metrics_index.enrichment.base import (
    Collected,
    DeferredEnricher,
    EnrichmentOutcome,
    EnrichmentUsage,
    ProgressCallback,
    Ticket,
)
from metrics_index.enrichment.claude import batches
from metrics_index.enrichment.claude.answers import BatchAnswers, read_answers
from metrics_index.enrichment.claude.guard import InputTokenEstimate, RunGuard, RunStopped
from metrics_index.enrichment.claude.limits import RateLimiter, limiter_for
from metrics_index.enrichment.claude.models import cache_minimum_tokens
from metrics_index.enrichment.claude.options import API_KEY_VARIABLE, ClaudeOptions
from metrics_index.enrichment.claude.prompt import (
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    TOOL,
    TOOL_NAME,
    plan_batches,
    user_message,
)
from metrics_index.secrets import redact
from metrics_index.sources import RawMetric

logger = logging.getLogger(__name__)

INITIAL_OUTPUT_TOKENS_PER_METRIC = 160
"""Output tokens a metric's answer is assumed to take until answers have been measured."""
OUTPUT_MARGIN = 1.25
OUTPUT_OVERHEAD_TOKENS = 64
MAX_OUTPUT_TOKENS = 16_000
_STOPPING_STATUSES = {401: "authentication", 402: "billing", 403: "permission", 404: "model or endpoint not found"}
_REJECTING_STATUSES = {400: "invalid request", **_STOPPING_STATUSES}


class RunRejected(RuntimeError):
    """The API rejected the run's first request (bad request, key, permission or model): stop, write nothing."""


class OutputSize:
    """`max_tokens` sized from measured output tokens per metric plus a margin: enough for the batch, but not a
    reservation of the per-minute output limit (charged from max_tokens when a request starts) that crowds out
    other requests. The measure only grows, so a batch of long answers is not cut twice."""

    def __init__(self) -> None:
        self.per_metric = float(INITIAL_OUTPUT_TOKENS_PER_METRIC)
        self._measured = False
        self._lock = threading.Lock()

    def max_tokens(self, count: int, factor: float = 1.0) -> int:
        wanted = (count * self.per_metric * OUTPUT_MARGIN + OUTPUT_OVERHEAD_TOKENS) * factor
        return min(MAX_OUTPUT_TOKENS, math.ceil(wanted))

    def observe(self, output_tokens: int, answered: int) -> None:
        if output_tokens <= 0 or answered <= 0:
            return
        with self._lock:
            measured = output_tokens / answered
            self.per_metric = max(self.per_metric, measured) if self._measured else measured
            self._measured = True


@dataclass
class _Request:
    metrics: list[RawMetric]
    output_factor: float = 1.0
    """Grows when a single metric's answer did not fit in max_tokens."""


@dataclass
class _Reply:
    message: Any = None
    error: Exception | None = None


class ClaudeEnricher(DeferredEnricher):
    """Enriches through the Messages API with a forced tool call; see the module docstring for the safeguards.

    First indexing and forced runs of more than `message_batch_threshold` metrics go through the Message Batches
    API instead (`submit`, later `collect`): half the price, answers within 24 hours.

    The first request goes alone: it writes the prompt cache the others read, and a rejected key, model or
    request stops the run before anything is written. Then up to `concurrency` requests run at once, as far as
    the process's shared rate limiter allows. An answer cut at max_tokens or refused is asked again in halves; a
    metric whose answer is missing or invalid is asked once more; after that, or when its request failed after
    the SDK's retries or the run stopped, it is reported in `failures` with the reason.
    """

    name = "claude"

    def __init__(self, options: ClaudeOptions | None = None, limiter: RateLimiter | None = None) -> None:
        self.options = options or ClaudeOptions()
        if not os.environ.get(API_KEY_VARIABLE):
            raise ValueError(f"the Claude enricher needs {API_KEY_VARIABLE} in the environment; it is not set")
        self._client = anthropic.Anthropic(
            base_url=self.options.base_url or None,
            max_retries=self.options.max_retries,
            timeout=self.options.timeout_seconds,
        )
        self.limiter = limiter or limiter_for(self.options.base_url, self.options.model)
        self.output_size = OutputSize()
        self._estimate = InputTokenEstimate()
        system_block: dict[str, Any] = {"type": "text", "text": SYSTEM_PROMPT}
        if self.options.cache_prompt:
            system_block["cache_control"] = {"type": "ephemeral"}
        self._system = [system_block]
        self._prefix_tokens: int | None = None

    @property
    def fingerprint(self) -> str:
        return f"claude:{self.options.model}:prompt-{PROMPT_VERSION}"

    def request_params(self, metrics: Sequence[RawMetric], output_factor: float = 1.0) -> dict[str, Any]:
        """The Messages API parameters for one batch of metrics (the Message Batches API sends the same)."""
        return {
            "model": self.options.model,
            "max_tokens": self.output_size.max_tokens(len(metrics), output_factor),
            "system": self._system,
            "tools": [TOOL],
            "tool_choice": {"type": "tool", "name": TOOL_NAME},
            "messages": [{"role": "user", "content": user_message(metrics)}],
        }

    def prefix_tokens(self) -> int | None:
        """Tokens of the cached prefix (tools + system) by messages.count_tokens; None when it cannot be counted."""
        if self._prefix_tokens is None:
            try:
                counted = self._client.messages.count_tokens(
                    model=self.options.model,
                    system=self._system,  # type: ignore[arg-type]
                    tools=[TOOL],  # type: ignore[list-item]
                    messages=[{"role": "user", "content": "."}],
                )
                self._prefix_tokens = int(counted.input_tokens)
            except (anthropic.AnthropicError, TypeError, ValueError) as error:
                logger.info("Could not count the prompt's tokens: %s", _failure_reason(error))
        return self._prefix_tokens

    def enrich(self, metrics: Sequence[RawMetric], progress: ProgressCallback | None = None) -> EnrichmentOutcome:
        guard = RunGuard(self.options, self.limiter, self._estimate)
        client = self._client.with_middleware(guard)
        outcome = EnrichmentOutcome(usage=guard.usage)
        if not metrics:
            return outcome
        if self.options.cache_prompt:
            guard.usage.cache_prefix_tokens = self.prefix_tokens() or 0
            self._estimate.prefix_tokens = self._estimate.prefix_tokens or self._prefix_tokens
        run = _Run(self, client, guard, outcome, progress)
        pending = list(metrics)
        for last_chance in (False, True):
            pending = run.round(plan_batches(pending, self.options.batch_size), last_chance)
            if not pending:
                break
        guard.usage.caching = caching_summary(guard.usage, self.options)
        logger.info(
            "Claude enrichment: %d enriched, %d failed; usage %s",
            len(outcome.enriched),
            len(outcome.failures),
            guard.usage.as_dict(),
        )
        return outcome

    def defers(self, count: int, first_run: bool) -> bool:
        threshold = self.options.message_batch_threshold
        return first_run and threshold is not None and count > threshold

    def submit(self, metrics: Sequence[RawMetric]) -> dict[str, Ticket]:
        """One Message Batch for all the metrics. Batches have no per-minute output limit to protect, so each
        request gets twice the usual room for its answer."""
        planned = plan_batches(metrics, self.options.batch_size)
        return batches.submit(self._client, planned, lambda batch: self.request_params(batch, output_factor=2.0))

    def collect(self, tickets: Mapping[str, Ticket], metrics: Mapping[str, RawMetric]) -> Collected:
        guard = RunGuard(self.options, self.limiter, self._estimate)
        collected = batches.collect(self._client, tickets, metrics, lambda usage: guard.record(usage, True))
        collected.usage = guard.usage
        return collected

    def batch_ended(self, batch_id: str) -> bool:
        try:
            return self._client.messages.batches.retrieve(batch_id).processing_status == "ended"
        except anthropic.NotFoundError:
            return True  # gone: the next run finds no results and asks its metrics again
        except anthropic.AnthropicError as error:
            logger.warning("Could not read Message Batch %s: %s", batch_id, _failure_reason(error))
            return False


class _Run:
    """One enrich() call: the request queue, the warm-up request, splitting, and what each answer settles."""

    def __init__(
        self,
        enricher: ClaudeEnricher,
        client: anthropic.Anthropic,
        guard: RunGuard,
        outcome: EnrichmentOutcome,
        progress: ProgressCallback | None,
    ) -> None:
        self.enricher = enricher
        self.client = client
        self.guard = guard
        self.outcome = outcome
        self.progress = progress or (lambda _done: None)
        self.answered = False

    def round(self, batches: list[list[RawMetric]], last_chance: bool) -> list[RawMetric]:
        """Ask about every batch (and the halves of any that was cut or refused); return the metrics to ask again."""
        queue = deque(_Request(batch) for batch in batches)
        again: list[RawMetric] = []
        concurrency = self.enricher.options.concurrency
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            running: dict[Future[_Reply], _Request] = {}
            while queue or running:
                room = concurrency if self.answered else 1  # the first answer writes the cache the others read
                while queue and len(running) < room:
                    request = queue.popleft()
                    running[pool.submit(self._ask, request)] = request
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    request = running.pop(future)
                    queue.extend(self._settle(request, future.result(), last_chance, again))
        return again

    def _ask(self, request: _Request) -> _Reply:
        try:
            params = self.enricher.request_params(request.metrics, request.output_factor)
            return _Reply(message=self.client.messages.create(**params))
        except (anthropic.AnthropicError, RunStopped) as error:
            return _Reply(error=error)

    def _settle(self, request: _Request, reply: _Reply, last_chance: bool, again: list[RawMetric]) -> list[_Request]:
        """Record what one reply settled; return the smaller requests to send instead of a cut or refused one."""
        metrics = request.metrics
        if reply.error is not None:
            self._failed(metrics, reply.error)
            return []
        self.answered = True
        answers = read_answers(reply.message, metrics)
        if answers.dropped:
            logger.warning("Dropped %d answers about metrics that were not in the request", answers.dropped)
        self.outcome.enriched.update(answers.enriched)
        if answers.stop_reason == "tool_use":
            usage = getattr(reply.message, "usage", None)
            self.enricher.output_size.observe(getattr(usage, "output_tokens", 0) or 0, len(answers.enriched))
        unanswered = [m for m in metrics if m.metric_name in answers.failures]
        if unanswered and answers.stop_reason in ("max_tokens", "refusal"):
            smaller = _smaller_requests(unanswered, request.output_factor, answers.stop_reason)
            if smaller:
                self.progress(len(answers.enriched))
                return smaller
            reason = _cut_or_refused(answers, reply.message)
            answers.failures = dict.fromkeys(answers.failures, reason)
            last_chance = True
        if last_chance:
            self.outcome.failures.update(answers.failures)
        else:
            again.extend(unanswered)
        self.progress(len(metrics) if last_chance else len(answers.enriched))
        return []

    def _failed(self, metrics: list[RawMetric], error: Exception) -> None:
        reason = _failure_reason(error)
        status = getattr(error, "status_code", None)
        if status in _REJECTING_STATUSES and not self.answered:
            self.guard.stop(reason)
            raise RunRejected(
                f"Claude enrichment stopped: the API rejected the first request ({reason}). Nothing was written; "
                "check the model name, the API key and its permissions."
            )
        if status in _STOPPING_STATUSES:
            self.guard.stop(reason)
        self.outcome.failures.update(dict.fromkeys((m.metric_name for m in metrics), reason))
        self.progress(len(metrics))


def _smaller_requests(unanswered: list[RawMetric], factor: float, stop_reason: str | None) -> list[_Request]:
    """Halves of a cut or refused batch; a single metric cut at max_tokens is asked with twice the room."""
    if len(unanswered) > 1:
        half = len(unanswered) // 2
        return [_Request(unanswered[:half], factor), _Request(unanswered[half:], factor)]
    if stop_reason == "max_tokens" and factor < 8:
        return [_Request(unanswered, factor * 2)]
    return []


def _cut_or_refused(answers: BatchAnswers, message: Any) -> str:
    request_id = _request_id(message)
    if answers.stop_reason == "refusal":
        return f"Claude declined to describe this metric (stop_reason=refusal{request_id})"
    return f"the answer about this metric did not fit in max_tokens, even alone (stop_reason=max_tokens{request_id})"


def _request_id(source: Any) -> str:
    value = getattr(source, "_request_id", None) or getattr(source, "request_id", None)
    return f", request_id {value}" if isinstance(value, str) and value else ""


def caching_summary(usage: EnrichmentUsage, options: ClaudeOptions) -> str:
    """Whether prompt caching engaged in this run, in words for the run's metadata."""
    if not options.cache_prompt:
        return "off"
    if not usage.answers_without_cache:
        return "engaged" if usage.cache_read_tokens or usage.cache_write_tokens else ""
    minimum = cache_minimum_tokens(options.model)
    prefix = f"the prefix is {usage.cache_prefix_tokens:,} tokens, " if usage.cache_prefix_tokens else ""
    return (
        f"not engaged: {usage.answers_without_cache} answers reported neither a cache write nor a cache read "
        f"({prefix}{options.model} caches prefixes of at least {minimum:,} tokens)"
    )


def _failure_reason(error: Exception) -> str:
    """A short reason for the failures record, with the request id and the API key redacted should a server echo it."""
    if isinstance(error, RunStopped):
        reason = f"not sent: {error}"
    elif isinstance(error, anthropic.APIStatusError):
        kind = _REJECTING_STATUSES.get(error.status_code, "")
        reason = (
            f"request failed after retries: HTTP {error.status_code} {kind} {type(error).__name__}: {error.message}"
            f"{_request_id(error)}"
        )
    elif isinstance(error, anthropic.APITimeoutError):
        reason = "request failed after retries: timed out"
    else:
        reason = f"request failed after retries: {type(error).__name__}: {error}"
    return redact(" ".join(reason.split()))[:400]
