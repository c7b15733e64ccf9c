"""Enrichment by Claude: many metrics per request, several requests at once, validated per metric.

Help text comes from exporters and is untrusted: it travels as escaped JSON inside a delimited data block,
every answer is checked against the vocabularies and accepted only for a metric of its own request, and
help that reads like instructions is sent in a request of its own, so it can at worst mislabel itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import anthropic

from metrics_index.enrichment.base import Enricher, EnrichmentOutcome, ProgressCallback
from metrics_index.enrichment.claude.answers import BatchAnswers, read_answers
from metrics_index.enrichment.claude.guard import RunGuard, RunStopped
from metrics_index.enrichment.claude.options import API_KEY_VARIABLE, ClaudeOptions
from metrics_index.enrichment.claude.prompt import (
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    TOOL,
    TOOL_NAME,
    plan_batches,
    user_message,
)
from metrics_index.sources import RawMetric

logger = logging.getLogger(__name__)

OUTPUT_TOKENS_PER_METRIC = 300
MAX_OUTPUT_TOKENS = 16_000
_STOPPING_STATUSES = {401: "authentication", 402: "billing", 403: "permission", 404: "model or endpoint not found"}


class ClaudeEnricher(Enricher):
    """Enriches through the Messages API with a forced tool call; see the module docstring for the safeguards.

    A metric whose answer is missing or invalid is asked once more (in a new batch); after that, or when its
    request failed after the SDK's retries or the run stopped, it is reported in `failures` with the reason.
    """

    name = "claude"

    def __init__(self, options: ClaudeOptions | None = None) -> None:
        self.options = options or ClaudeOptions()
        if not os.environ.get(API_KEY_VARIABLE):
            raise ValueError(f"the Claude enricher needs {API_KEY_VARIABLE} in the environment; it is not set")
        self._client = anthropic.Anthropic(
            base_url=self.options.base_url,
            max_retries=self.options.max_retries,
            timeout=self.options.timeout_seconds,
        )
        system_block: dict[str, Any] = {"type": "text", "text": SYSTEM_PROMPT}
        if self.options.cache_prompt:
            system_block["cache_control"] = {"type": "ephemeral"}
        self._system = [system_block]

    @property
    def fingerprint(self) -> str:
        return f"claude:{self.options.model}:prompt-{PROMPT_VERSION}"

    def enrich(self, metrics: Sequence[RawMetric], progress: ProgressCallback | None = None) -> EnrichmentOutcome:
        guard = RunGuard(self.options)
        client = self._client.with_middleware(guard)
        outcome = EnrichmentOutcome(usage=guard.usage)
        pending = list(metrics)
        for last_chance in (False, True):
            second_chance: list[RawMetric] = []
            for batch, answers, request_failed in self._ask(client, guard, pending):
                settled = request_failed or last_chance
                outcome.enriched.update(answers.enriched)
                if settled:
                    outcome.failures.update(answers.failures)
                else:
                    second_chance += [m for m in batch if m.metric_name in answers.failures]
                if progress:
                    progress(len(batch) if settled else len(answers.enriched))
            pending = second_chance
            if not pending:
                break
        logger.info(
            "Claude enrichment: %d enriched, %d failed; usage %s",
            len(outcome.enriched),
            len(outcome.failures),
            guard.usage.as_dict(),
        )
        return outcome

    def _ask(
        self, client: anthropic.Anthropic, guard: RunGuard, metrics: Sequence[RawMetric]
    ) -> Iterator[tuple[list[RawMetric], BatchAnswers, bool]]:
        """Each batch with its answers and whether the request itself failed, as the batches finish."""
        batches = plan_batches(metrics, self.options.batch_size)
        if not batches:
            return
        with ThreadPoolExecutor(max_workers=min(self.options.concurrency, len(batches))) as pool:
            futures = {pool.submit(self._ask_batch, client, guard, batch): batch for batch in batches}
            for future in as_completed(futures):
                answers, request_failed = future.result()
                yield futures[future], answers, request_failed

    def _ask_batch(
        self, client: anthropic.Anthropic, guard: RunGuard, batch: list[RawMetric]
    ) -> tuple[BatchAnswers, bool]:
        try:
            message = client.messages.create(
                model=self.options.model,
                max_tokens=min(MAX_OUTPUT_TOKENS, 256 + OUTPUT_TOKENS_PER_METRIC * len(batch)),
                system=self._system,
                tools=[TOOL],
                tool_choice={"type": "tool", "name": TOOL_NAME},
                messages=[{"role": "user", "content": user_message(batch)}],
            )
        except (anthropic.AnthropicError, RunStopped) as error:
            reason = _request_failure(error)
            if isinstance(error, anthropic.APIStatusError) and error.status_code in _STOPPING_STATUSES:
                guard.stop(reason)
            return BatchAnswers(failures={m.metric_name: reason for m in batch}), True
        guard.record(message)
        answers = read_answers(message, batch)
        if answers.dropped:
            logger.warning("Dropped %d answers about metrics that were not in the request", answers.dropped)
        return answers, False


def _request_failure(error: Exception) -> str:
    """A short reason for the failures record, with the API key redacted should a server echo it."""
    if isinstance(error, RunStopped):
        reason = f"not sent: {error}"
    elif isinstance(error, anthropic.APIStatusError):
        kind = _STOPPING_STATUSES.get(error.status_code, "")
        reason = (
            f"request failed after retries: HTTP {error.status_code} {kind} {type(error).__name__}: {error.message}"
        )
    elif isinstance(error, anthropic.APITimeoutError):
        reason = "request failed after retries: timed out"
    else:
        reason = f"request failed after retries: {type(error).__name__}: {error}"
    return redact(" ".join(reason.split()))[:400]


def redact(text: str) -> str:
    key = os.environ.get(API_KEY_VARIABLE)
    return text.replace(key, "[redacted]") if key else text
