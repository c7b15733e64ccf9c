"""Reading a reply: every answer checked against the vocabularies, and accepted only for a metric of its request."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anthropic
from pydantic import ValidationError

from metrics_index.enrichment.claude.prompt import TOOL_NAME
from metrics_index.enrichment.rules import meter_type
from metrics_index.enrichment.vocabulary import METER_TYPES, EnrichedFields
from metrics_index.sources import RawMetric
from metrics_index.units import UNITS, unit_of


@dataclass
class BatchAnswers:
    """What one reply said, per metric of its request; answers about any other metric are dropped."""

    enriched: dict[str, EnrichedFields] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    dropped: int = 0
    stop_reason: str | None = None
    """`max_tokens` (the answer was cut) and `refusal` (the model declined) call for a smaller request."""


def read_answers(message: anthropic.types.Message, batch: Sequence[RawMetric]) -> BatchAnswers:
    """Validate a reply metric by metric: vocabulary, declared type, unit, exactly one answer per metric.

    The SDK does not validate replies either, so nothing about their shape is taken for granted."""
    expected = {m.metric_name: m for m in batch}
    stop_reason = getattr(message, "stop_reason", None)
    result = BatchAnswers(stop_reason=stop_reason if isinstance(stop_reason, str) else None)
    content = getattr(message, "content", None)
    blocks = content if isinstance(content, list) else []
    block = next((b for b in blocks if getattr(b, "type", None) == "tool_use" and b.name == TOOL_NAME), None)
    tool_input = getattr(block, "input", None)
    items = tool_input.get("metrics") if isinstance(tool_input, dict) else None
    if not isinstance(items, list):
        reason = (
            "Claude declined to answer (stop_reason=refusal)"
            if stop_reason == "refusal"
            else f"the reply held no list of metrics in a {TOOL_NAME} call (stop_reason={stop_reason})"
        )
        result.failures = dict.fromkeys(expected, reason)
        return result
    answers: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        name = item.get("metric_name") if isinstance(item, dict) else None
        if isinstance(name, str) and name.strip() in expected:
            answers[name.strip()].append(item)
        else:
            result.dropped += 1
    for name, metric in expected.items():
        answer = _validated_answer(metric, answers.get(name, []), stop_reason)
        if isinstance(answer, str):
            result.failures[name] = answer
        else:
            result.enriched[name] = answer
    return result


def _validated_answer(metric: RawMetric, answers: list[Any], stop_reason: str | None) -> EnrichedFields | str:
    """The validated answer, or why there is none."""
    if not answers:
        truncated = " (the reply was cut at max_tokens)" if stop_reason == "max_tokens" else ""
        return f"no answer for this metric in the reply{truncated}"
    if len(answers) > 1:
        return f"{len(answers)} answers for this metric in one reply"
    try:
        fields = EnrichedFields.model_validate(answers[0])
    except ValidationError as error:
        details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in error.errors())
        return f"invalid answer: {details}"[:400]
    declared = metric.type
    conventional = meter_type(metric.metric_name, declared)
    if declared in METER_TYPES and declared != "unknown" and fields.meter_type not in (declared, conventional):
        return f"invalid answer: meter_type {fields.meter_type!r} contradicts the declared type {declared!r}"
    if fields.unit and fields.unit not in UNITS:
        return f"invalid answer: unknown unit {fields.unit!r}; expected one of {list(UNITS)} or none"[:400]
    update = {"unit": unit_of(metric.metric_name, metric.unit, metric.help, answered=fields.unit)}
    if fields.meter_type == declared and conventional != declared:
        update["meter_type"] = conventional  # a gauge named *_info is an info metric
    return fields.model_copy(update=update)
