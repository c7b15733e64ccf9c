"""Metric names as words, and the document text the semantic index embeds (refined by the search work)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def metric_words(name: str) -> list[str]:
    return [w.lower() for part in name.split("_") for w in _CAMEL.split(part) if w]


def document_text(row: Mapping[str, Any]) -> str:
    fields = (row.get("description"), row.get("category"), row.get("subcategory"), row.get("golden_signal_type"))
    return " ".join([" ".join(metric_words(row["metric_name"])), *(str(f) for f in fields if f)])
