"""Search results as plain data for programs and LLM callers, shared by the CLI, the HTTP service and the MCP
server: short keys, no empty fields, descriptions cut short (10 results stay well under 1,000 tokens)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

JSON_DESCRIPTION_CHARS = 160


def compact_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """One result (the fields of `search.SearchResult`) in its compact form."""
    item: dict[str, Any] = {"metric": result["metric_name"], "type": result["type"]}
    if result.get("unit"):
        item["unit"] = result["unit"]
    item["score"] = round(result["score"], 3)
    item["description"] = shorten(result.get("description") or "", JSON_DESCRIPTION_CHARS)
    if result.get("promql"):
        item["promql"] = result["promql"]
    if result.get("matched"):
        item["matched"] = list(result["matched"])
    if result.get("weak"):
        item["weak"] = True
    return item


def compact_json(results: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps([compact_result(r) for r in results], separators=(",", ":"), ensure_ascii=False)


def shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0] + "…"
