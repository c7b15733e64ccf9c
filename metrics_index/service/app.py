"""The HTTP API of `metrics-index serve` (FastAPI): versioned JSON under /v1, health and readiness probes, the
service's own Prometheus metrics, an OpenAPI document at /openapi.json with its page at /docs.

Every error is `{"error": {"status": ..., "message": ...}}` without a stack trace: 400 for input that breaks a
rule (empty or too long question, k out of range, malformed namespace), 401 without the bearer token when one is
configured, 404 for an unknown namespace or metric, 422 for a body of the wrong shape, 500 (logged) otherwise.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from metrics_index.service.core import CatalogService
from metrics_index.service.limits import MAX_K, MAX_NAME_CHARS, MAX_NAMES, MAX_QUESTION_CHARS, BadRequest, NotFound
from metrics_index.service.telemetry import Telemetry

log = logging.getLogger(__name__)

TOKEN_ENV = "METRICS_INDEX_TOKEN"
API_VERSION = "v1"


class SearchRequest(BaseModel):
    namespace: str = Field(description="tenant:service, e.g. production:order-service", max_length=200)
    question: str = Field(description="what the metric should tell, in words or a metric name")
    k: int = Field(10, description=f"number of results, 1 to {MAX_K}")
    explain: bool = Field(False, description="say which fields of each result matched the question")


class SearchResultItem(BaseModel):
    metric_name: str
    score: float
    type: str
    unit: str
    description: str
    promql: str = Field("", description="a query for it (a rate for a counter, a quantile for a histogram)")
    matched: list[str] = []
    weak: bool = Field(False, description="not close in meaning to the question: the namespace may have no such metric")


class SearchResponse(BaseModel):
    namespace: str
    question: str
    results: list[SearchResultItem]
    took_ms: float


class ValidateRequest(BaseModel):
    namespace: str = Field(max_length=200)
    names: list[str] = Field(description=f"1 to {MAX_NAMES} metric or series names of at most {MAX_NAME_CHARS} chars")


class NameAnswer(BaseModel):
    name: str
    known: bool
    suggestions: list[str] = []


class ValidateResponse(BaseModel):
    namespace: str
    all_known: bool
    names: list[NameAnswer]


class FeedbackRequest(BaseModel):
    namespace: str = Field(max_length=200)
    question: str
    metric: str
    good: bool = Field(description="true when `metric` answers `question`, false when it does not")


class ErrorBody(BaseModel):
    status: int
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "input breaks a rule"),
        (401, "bearer token missing or wrong (when one is configured)"),
        (404, "not found"),
    )
}


def create_app(service: CatalogService | None = None, env: Mapping[str, str] = os.environ) -> FastAPI:
    """The API over `service`, with the MCP server's streamable HTTP endpoint at /mcp."""
    from metrics_index.mcp_server import build_mcp_server, transport_security

    service = service or CatalogService(env)
    telemetry = Telemetry(service)
    mcp = build_mcp_server(service)
    mcp_app = mcp.streamable_http_app(transport_security=transport_security(env))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The first /metrics page imports Dagster to read the last runs: seconds holding the GIL, paid here and
        # not by the searches in flight at the first scrape.
        await asyncio.to_thread(telemetry.exposition)
        async with mcp.session_manager.run():
            yield

    app = FastAPI(
        title="metrics-index",
        version=API_VERSION,
        description=f"Search, validate and explain Prometheus metrics per namespace. Questions of at most "
        f"{MAX_QUESTION_CHARS} characters, k from 1 to {MAX_K}. With {TOKEN_ENV} set, /{API_VERSION} and /mcp "
        "need `Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.telemetry = telemetry
    app.router.routes.extend(mcp_app.routes)  # /mcp beside the API, sharing its lifespan
    if env.get(TOKEN_ENV):
        app.add_middleware(BearerTokenMiddleware, token=env[TOKEN_ENV], prefixes=(f"/{API_VERSION}/", "/mcp"))

    @app.get(f"/{API_VERSION}/namespaces", responses=ERRORS)
    def list_namespaces() -> dict[str, list[dict[str, Any]]]:
        """Every indexed namespace: its number of names, and whether it is held in memory."""
        return {"namespaces": service.list_namespaces()}

    @app.post(f"/{API_VERSION}/search", responses=ERRORS)
    def search(body: SearchRequest) -> SearchResponse:
        """The k metrics of the namespace that best answer the question, best first."""
        with telemetry.request("search", body.namespace):
            answer = service.search(body.namespace, body.question, body.k, body.explain)
        return SearchResponse(
            namespace=answer.namespace,
            question=answer.question,
            results=[SearchResultItem(**vars(result)) for result in answer.results],
            took_ms=answer.took_ms,
        )

    @app.post(f"/{API_VERSION}/validate", responses=ERRORS)
    def validate(body: ValidateRequest) -> ValidateResponse:
        """Exact-match check of names against the namespace (histogram/summary series included); unknown names
        come with up to three close matches."""
        with telemetry.request("validate", body.namespace):
            answers = service.validate(body.namespace, body.names)
        return ValidateResponse(
            namespace=body.namespace,
            all_known=all(a.known for a in answers),
            names=[NameAnswer(name=a.name, known=a.known, suggestions=list(a.suggestions)) for a in answers],
        )

    @app.get(f"/{API_VERSION}/namespaces/{{namespace}}/metrics/{{metric}}", responses=ERRORS)
    def metric_card(namespace: str, metric: str) -> dict[str, Any]:
        """One metric's enriched record: type, unit, description, category, golden signal, meter type and
        provenance (enricher, when, input hash, error of a fallback)."""
        with telemetry.request("card", namespace):
            return service.card(namespace, metric)

    @app.post(f"/{API_VERSION}/feedback", responses=ERRORS, status_code=201)
    def feedback(body: FeedbackRequest) -> dict[str, Any]:
        """Say whether a metric answered a question; confirmed answers become the namespace's golden queries."""
        with telemetry.request("feedback", body.namespace):
            return service.add_feedback(body.namespace, body.question, body.metric, body.good)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Redis and Chroma answer and the embedder is loaded (503 otherwise)."""
        checks = service.ready()
        ok = all(value == "ok" for value in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """The service's own metrics in the Prometheus text format."""
        body, content_type = telemetry.exposition()
        return PlainTextResponse(body, media_type=content_type)

    _install_error_handlers(app)
    return app


class BearerTokenMiddleware:
    """Refuses requests under the protected path prefixes without `Authorization: Bearer <token>` (401, JSON).
    The token is compared in constant time and never logged."""

    def __init__(self, app: ASGIApp, token: str, prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                message = "missing or wrong bearer token: send Authorization: Bearer <token>"
                response = JSONResponse({"error": {"status": 401, "message": message}}, 401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    def error(status: int, message: str, **details: object) -> JSONResponse:
        return JSONResponse({"error": {"status": status, "message": message, **details}}, status)

    @app.exception_handler(BadRequest)
    async def bad_request(_request: Request, exc: BadRequest) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return error(404, str(exc), **({"suggestions": list(exc.suggestions)} if exc.suggestions else {}))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
        )
        return error(422, f"invalid request: {problems}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the service log has the details")
