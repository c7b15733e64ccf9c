"""The Message Batches API: the same requests as the Messages API at half the price, with limits of their own,
answered within 24 hours. A batch's requests are named r0, r1...; the catalog rows keep which metric waits on
which request (base.Ticket), so the answers are matched to the metrics of their own request only, even by a
process that did not submit the batch."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anthropic

from metrics_index.enrichment.base import Collected, Ticket
from metrics_index.enrichment.claude.answers import read_answers
from metrics_index.sources import RawMetric

logger = logging.getLogger(__name__)

Params = Callable[[Sequence[RawMetric]], dict[str, Any]]
"""The Messages API parameters of one request about these metrics."""
Record = Callable[[Any], None]
"""Accounts one answer's usage (at the batch price)."""


def submit(client: anthropic.Anthropic, batches: Sequence[Sequence[RawMetric]], params: Params) -> dict[str, Ticket]:
    """One Message Batch with a request per batch of metrics; the ticket of every metric."""
    requests = [{"custom_id": f"r{index}", "params": params(batch)} for index, batch in enumerate(batches)]
    created = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    logger.info("Submitted Message Batch %s: %d requests", created.id, len(requests))
    return {m.metric_name: Ticket(created.id, f"r{index}") for index, batch in enumerate(batches) for m in batch}


def collect(
    client: anthropic.Anthropic, tickets: Mapping[str, Ticket], metrics: Mapping[str, RawMetric], record: Record
) -> Collected:
    """The answers of every ended batch behind `tickets`; metrics of batches still running are `waiting`."""
    collected = Collected()
    requests: dict[str, dict[str, list[RawMetric]]] = defaultdict(lambda: defaultdict(list))
    for name, ticket in tickets.items():
        if name in metrics:
            requests[ticket.batch_id][ticket.request_id].append(metrics[name])
    for batch_id, members in requests.items():
        names = [m.metric_name for group in members.values() for m in group]
        try:
            batch = client.messages.batches.retrieve(batch_id)
        except anthropic.NotFoundError:
            collected.failures.update(dict.fromkeys(names, f"Message Batch {batch_id} no longer exists"))
            continue
        except anthropic.AnthropicError as error:
            logger.warning("Could not read Message Batch %s (its metrics keep waiting): %s", batch_id, error)
            collected.waiting.update(names)
            continue
        if batch.processing_status != "ended":
            collected.waiting.update(names)
            continue
        _take_results(client, batch_id, members, record, collected)
    return collected


def _take_results(
    client: anthropic.Anthropic,
    batch_id: str,
    members: Mapping[str, list[RawMetric]],
    record: Record,
    collected: Collected,
) -> None:
    answered: set[str] = set()
    for line in client.messages.batches.results(batch_id):
        batch = members.get(line.custom_id)
        if batch is None:
            continue
        answered.add(line.custom_id)
        result = line.result
        if result.type == "succeeded":
            record(getattr(result.message, "usage", None))
            answers = read_answers(result.message, batch)
            collected.enriched.update(answers.enriched)
            collected.failures.update(answers.failures)
            continue
        detail = getattr(getattr(getattr(result, "error", None), "error", None), "message", "")
        reason = f"Message Batch {batch_id} request {line.custom_id} {result.type}" + (f": {detail}" if detail else "")
        collected.failures.update(dict.fromkeys((m.metric_name for m in batch), reason[:400]))
    for request_id in members.keys() - answered:
        reason = f"Message Batch {batch_id} has no result for request {request_id}"
        collected.failures.update(dict.fromkeys((m.metric_name for m in members[request_id]), reason))
