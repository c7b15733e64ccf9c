"""The catalog as an MCP server (the official `mcp` SDK): four tools for agents that write PromQL.

Over stdio (`metrics-index mcp`, what a desktop client launches) or streamable HTTP (`metrics-index mcp
--transport http`, and at /mcp of `metrics-index serve`). Answers are compact JSON text: ten search results with
short descriptions are a few hundred tokens, not a dump of the namespace. A refused input (empty question,
unknown namespace...) comes back as a tool error whose message says what to change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations
from pydantic import Field

from metrics_index.answers import compact_result
from metrics_index.service.core import CatalogService
from metrics_index.service.limits import MAX_K, MAX_NAMES, MAX_QUESTION_CHARS, BadRequest, NotFound

INSTRUCTIONS = (
    "Prometheus metrics catalog. Metrics live in namespaces 'tenant:service' (list_namespaces). Before writing "
    "PromQL, find the metric with search_metrics, check exact names with validate_metrics (histogram _bucket/_sum/"
    "_count series included), and read one metric's unit, type and meaning with explain_metric."
)
ALLOWED_HOSTS_ENV = "METRICS_INDEX_MCP_ALLOWED_HOSTS"
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)

Namespace = Annotated[str, Field(description="the namespace, 'tenant:service', e.g. 'demo:node'")]


def build_mcp_server(service: CatalogService) -> MCPServer:
    mcp = MCPServer("metrics-index", instructions=INSTRUCTIONS)

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    def list_namespaces() -> str:
        """The indexed namespaces ('tenant:service') with how many metric and series names each has."""
        return _json({item["namespace"]: item["names"] for item in service.list_namespaces()})

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    def search_metrics(
        namespace: Namespace,
        question: Annotated[
            str,
            Field(
                description="what the metric should measure, in words or a (partial) metric name",
                max_length=MAX_QUESTION_CHARS,
            ),
        ],
        k: Annotated[int, Field(description="how many metrics to return", ge=1, le=MAX_K)] = 10,
        explain: Annotated[bool, Field(description="add which fields of each metric matched")] = False,
    ) -> str:
        """Find the metrics of a namespace that answer a question ('p99 request latency', 'bytes sent by the
        network card'), best first: name, type, unit, score and a short description of each."""
        with refusals_as_tool_errors():
            answer = service.search(namespace, question, k, explain)
        return _json([compact_result(vars(result)) for result in answer.results])

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    def validate_metrics(
        namespace: Namespace,
        names: Annotated[
            list[str], Field(description="metric or series names to check exactly", min_length=1, max_length=MAX_NAMES)
        ],
    ) -> str:
        """Check that names exist in the namespace, exactly; unknown names come with close matches. Use before
        putting a name in a PromQL query."""
        with refusals_as_tool_errors():
            answers = service.validate(namespace, names)
        return _json(
            {a.name: True if a.known else {"known": False, "did_you_mean": list(a.suggestions)} for a in answers}
        )

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    def explain_metric(namespace: Namespace, metric: Annotated[str, Field(description="the exact metric name")]) -> str:
        """One metric's card: type, unit, description, category, golden signal, meter type and how it was
        enriched."""
        with refusals_as_tool_errors():
            card = service.card(namespace, metric)
        return _json({key: value for key, value in card.items() if value not in ("", None, {})})

    return mcp


@contextmanager
def refusals_as_tool_errors() -> Iterator[None]:
    """Input the service refuses becomes a tool error with its message, for the model to read and correct (the
    SDK hides the message of any other exception)."""
    try:
        yield
    except (BadRequest, NotFound) as error:
        raise ToolError(str(error)) from None


def transport_security(env: Mapping[str, str]) -> TransportSecuritySettings | None:
    """DNS-rebinding protection for streamable HTTP: localhost only (the SDK's default) unless
    METRICS_INDEX_MCP_ALLOWED_HOSTS lists the Host headers to accept (e.g. `metrics-index:8765` in compose)."""
    hosts = [host.strip() for host in env.get(ALLOWED_HOSTS_ENV, "").split(",") if host.strip()]
    return TransportSecuritySettings(allowed_hosts=hosts) if hosts else None


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def run_mcp(
    env: Mapping[str, str] = os.environ, transport: str = "stdio", host: str = "127.0.0.1", port: int = 8766
) -> None:
    """Serve the tools over stdio, or over streamable HTTP at http://HOST:PORT/mcp."""
    mcp = build_mcp_server(CatalogService(env))
    if transport == "stdio":
        mcp.run()
    else:
        mcp.run(transport="streamable-http", host=host, port=port, transport_security=transport_security(env))
