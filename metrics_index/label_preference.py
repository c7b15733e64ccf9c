"""Prefer metrics that carry the label a question asks to break down by ("errors by status code", "per CPU mode").

The words after "by", "per", "each" or "across" (and the labels they usually mean: interface → device, status →
code…) name the wanted labels; among the fused ranking's first DEPTH results, a metric carrying one gains WEIGHT
(scores are 0..1), never past an exact or prefix name match. Kept because it measured better: bench/label_search.py,
on questions that need a label (bench/queries/labels.jsonl, written before any ranking was looked at), MRR 0.708 →
0.852 and recall@1 0.556 → 0.778 at this weight, and no change on the dev and held-out sets.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import pandas as pd

    from metrics_index.sources.labels import LabelSummary

WEIGHT = 0.2
DEPTH = 30
CUES = {"by", "per", "each", "across"}
WORD_LABELS = {"interface": ("device",), "core": ("cpu",), "command": ("cmd",), "database": ("db",)}
COMMON_LABELS = {"job", "instance"}  # on every series: saying nothing about a metric
BELOW_PINNED = 0.9999  # exact and prefix name matches score 1.0 and stay first
# A label that a query writer often uses for another one of the same meaning.
LABEL_SYNONYMS = {
    "status": ("code", "status_code"),
    "status_code": ("code", "status"),
    "code": ("status", "status_code"),
    "method": ("verb",),
    "verb": ("method",),
    "path": ("handler", "route", "endpoint", "uri", "url"),
    "route": ("handler", "path", "endpoint"),
    "endpoint": ("handler", "route", "path"),
    "handler": ("route", "path", "endpoint"),
    "host": ("instance", "hostname", "nodename"),
    "hostname": ("instance", "host", "nodename"),
    "service": ("job",),
    "app": ("job",),
    "core": ("cpu",),
    "disk": ("device",),
    "interface": ("device",),
    "mountpoint": ("mount", "path"),
}

Result = TypeVar("Result")


def wanted_labels(question: str) -> set[str]:
    """The labels the question asks to break down by: the two words after a cue, and the labels they usually mean."""
    words = re.findall(r"[a-z0-9_]+", question.lower())
    asked = [w for i, word in enumerate(words) if word in CUES for w in words[i + 1 : i + 3]]
    names = set(asked) | {"_".join(asked[i : i + 2]) for i in range(len(asked) - 1)}
    for word in asked:
        names.update(LABEL_SYNONYMS.get(word, ()), WORD_LABELS.get(word, ()))
    return names - COMMON_LABELS


def prefer_labelled(
    results: Sequence[Result],
    score: Callable[[Result], float],
    labels_of: Callable[[Result], Collection[str]],
    wanted: set[str],
    weight: float = WEIGHT,
) -> list[tuple[Result, float, set[str]]]:
    """(result, new score, wanted labels it has), best first; the order of `results` breaks ties."""
    if not wanted:
        return [(result, score(result), set()) for result in results]
    rescored = []
    for position, result in enumerate(results):
        old, hits = score(result), wanted.intersection(labels_of(result))
        new = old if old >= 1.0 or not hits else min(old + weight, BELOW_PINNED)
        rescored.append((-new, position, result, new, hits))
    return [(result, new, hits) for _, _, result, new, hits in sorted(rescored, key=lambda item: item[:2])]


def with_label_columns(enriched: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    """The enriched frame with what search keeps of each metric's labels: its schema (`labels`, from `raw`),
    `label_names` and `label_values`."""
    from metrics_index.sources.labels import LabelSchema  # pandas: not for the searches that import this module

    if "labels" in raw and "labels" not in enriched:
        enriched = enriched.merge(raw[["metric_name", "labels"]], on="metric_name", how="left")
    texts = enriched["labels"] if "labels" in enriched else [None] * len(enriched)
    schemas = [LabelSchema.from_json(text) for text in texts]
    return enriched.assign(
        label_names=[",".join(sorted(set(s.labels) - COMMON_LABELS)) if s else "" for s in schemas],
        label_values=[label_values_text(s.labels) if s else "" for s in schemas],
    )


def label_values_text(labels: Mapping[str, LabelSummary]) -> str:
    """The labels whose every value is known, with their values in words, for the metric's embedding: "by action:
    add header, greylist, no action, reject" lets "greylisted mail" find `rspamd_actions_total`. Values without a
    letter (numbers, addresses) and the structural `le` / `quantile` say nothing a question asks."""
    from metrics_index.sources.labels import STRUCTURAL_LABELS

    parts = []
    for name, summary in sorted(labels.items()):
        if name in COMMON_LABELS or name in STRUCTURAL_LABELS or not summary.complete:
            continue
        values = [value.replace("_", " ") for value in summary.values if any(c.isalpha() for c in value)]
        if values:
            parts.append(f"by {name.replace('_', ' ')}: {', '.join(values)}")
    return "; ".join(parts)
