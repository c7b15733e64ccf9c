"""A local stand-in for the Anthropic Messages API, close enough to the real one that the enricher's handling of
rate limits, prompt caching, cut or refused answers and the Message Batches API is tested offline with the real
`anthropic` client. Everything modelled here follows Anthropic's published documentation (the sources are listed
in the README's Claude section); what it leaves out is listed there too.

- POST /v1/messages answers the forced tool call with a deterministic enrichment of the metrics in the request's
  `<metrics>` block. `usage` models prompt caching: a tools + system prefix marked with `cache_control` is
  written by the first request and read by later ones (for five minutes after its last use), but only when it
  reaches the model's minimum cacheable length; below it nothing is cached and nothing says so, as on the API.
  When `max_tokens` is too small for the answer, only the entries that fit come back, with
  `stop_reason: "max_tokens"`. Every response carries a `request-id` header.
- Rate limits (`limits=`): per-minute token buckets for requests, input tokens (uncached input and cache writes;
  cache reads do not count) and output tokens (charged from `max_tokens` when a request starts, the unused part
  returned when it ends). Every answer carries the `anthropic-ratelimit-*` headers; a request that does not fit
  gets 429 `rate_limit_error` with `retry-after`. `minute_seconds` shortens the minute for benchmarks.
- 404 `not_found_error` for an unknown model; 400 `invalid_request_error` for a malformed request (tool schema,
  tool_choice, max_tokens, too many cache breakpoints).
- POST /v1/messages/count_tokens, with the same token estimate as the answers' `usage`.
- The Message Batches endpoints (create, retrieve, results as .jsonl, cancel). A batch ends when the test calls
  `end_batches()` (or after `batch_seconds`) and expires with `expire_batches()`.

Faults are scripted per request (429, 529, 500, 401..., slow replies, refusals, broken or incomplete answers),
every request is recorded, and a configurable marker in help text makes it answer like a model that obeyed an
injected instruction. Tests use the `messages_api` fixture (conftest.py); the benchmark uses `MessagesAPIServer`
as a context manager.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from metrics_index.enrichment.claude.models import cache_minimum_tokens, model_family
from metrics_index.enrichment.rules import meter_type
from metrics_index.enrichment.vocabulary import GOLDEN_SIGNALS
from metrics_index.units import help_unit, name_unit

ToolInputEdit = Callable[[dict[str, Any]], Any]
"""Changes the tool input the server would answer with (a dict with a `metrics` list)."""
BodyFactory = Callable[[dict[str, str], dict[str, Any]], Any]
"""Builds a whole response body from the request headers and JSON body."""

_METRICS_BLOCK = re.compile(r"<metrics>(.*?)</metrics>", re.S)
_NAME_LIKE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_PREFIX_CATEGORIES = (
    ("go_", "runtime", "memory_allocator"),
    ("process_", "process", "lifecycle"),
    ("node_", "system", "kernel"),
    ("prometheus_", "monitoring", "tsdb"),
    ("redis_", "database", "commands"),
    ("alertmanager_", "alerting", "alerts"),
    ("probe_", "probing", "probe"),
    ("push", "batch", "push"),
)
KNOWN_MODELS = frozenset(
    {
        "claude-haiku-4-5",
        "claude-haiku-4-5-20251001",
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-6",
        "claude-opus-4-5",
        "claude-opus-4-5-20251101",
        "claude-opus-4-6",
    }
)
MAX_OUTPUT_TOKENS = 64_000
"""The largest max_tokens the fake accepts (Claude Haiku 4.5's and Sonnet 4.5's maximum output)."""
CACHE_LIFETIME_MINUTES = 5
MAX_CACHE_BREAKPOINTS = 4


@dataclass(frozen=True)
class RateLimits:
    """Per-minute limits of one model family, as on Anthropic's rate-limits page."""

    requests_per_minute: int
    input_tokens_per_minute: int
    output_tokens_per_minute: int


TIER_1 = RateLimits(requests_per_minute=50, input_tokens_per_minute=50_000, output_tokens_per_minute=10_000)
"""Tier 1 (Start) limits of Claude Haiku 4.5, the default model (Anthropic, "Rate limits")."""


@dataclass
class Fault:
    """What the server does with one request instead of (or on top of) a plain answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: BodyFactory | None = None
    edit: ToolInputEdit | None = None
    stop_reason: str | None = None
    only_for: str | None = None
    """Apply to the next request that asks about this metric, instead of the next request."""


def error_body(kind: str, message: str) -> BodyFactory:
    return lambda _headers, _body: {"type": "error", "error": {"type": kind, "message": message}}


def rate_limited(retry_after: float = 0.05) -> Fault:
    return Fault(429, {"retry-after": f"{retry_after:g}"}, body=error_body("rate_limit_error", "rate limited"))


def _retry_after(seconds: float | None) -> dict[str, str]:
    return {} if seconds is None else {"retry-after": f"{seconds:g}"}


def overloaded(retry_after: float | None = None) -> Fault:
    return Fault(529, _retry_after(retry_after), body=error_body("overloaded_error", "Overloaded"))


def server_error(retry_after: float | None = None) -> Fault:
    return Fault(500, _retry_after(retry_after), body=error_body("api_error", "Internal server error"))


def invalid_request(message: str = "tool_choice: forced tool use is not supported with this model") -> Fault:
    return Fault(400, body=error_body("invalid_request_error", message))


def for_metric(name: str, *faults: Fault) -> list[Fault]:
    """The same faults, used only by requests that ask about `name`."""
    return [replace(fault, only_for=name) for fault in faults]


def slow(seconds: float) -> Fault:
    return Fault(delay=seconds)


def refusal(name: str | None = None) -> Fault:
    """The model declines: `stop_reason: "refusal"` and no tool call."""
    return Fault(edit=lambda _tool_input: None, stop_reason="refusal", only_for=name)


def verbose(extra_chars: int = 350) -> Fault:
    """Answers far longer than usual (both descriptions padded), as a model might write for unusual metrics."""
    padding = (" More detail." * (extra_chars // 13 + 1))[:extra_chars]

    def edit(tool_input: dict[str, Any]) -> dict[str, Any]:
        return {
            "metrics": [
                {
                    **m,
                    "description": m["description"][:200] + padding,
                    "golden_signal_description": m["golden_signal_description"][:40] + padding,
                }
                for m in tool_input["metrics"]
            ]
        }

    return Fault(edit=edit)


def broken_schema() -> Fault:
    """A tool input whose `metrics` is not a list at all."""
    return Fault(edit=lambda tool_input: {"metrics": "all good, nothing to report"})


def drop_metric(name: str) -> Fault:
    return Fault(
        edit=lambda tool_input: {"metrics": [m for m in tool_input["metrics"] if m["metric_name"] != name]},
        only_for=name,
    )


def add_metric(item: dict[str, Any]) -> Fault:
    return Fault(edit=lambda tool_input: {"metrics": [*tool_input["metrics"], item]})


def replace_fields(name: str, **fields: Any) -> Fault:
    """Answer `name` with some fields changed (for values outside the vocabulary, wrong types...)."""

    def edit(tool_input: dict[str, Any]) -> dict[str, Any]:
        return {"metrics": [{**m, **fields} if m["metric_name"] == name else m for m in tool_input["metrics"]]}

    return Fault(edit=edit, only_for=name)


def deterministic_enrichment(metric: dict[str, Any]) -> dict[str, Any]:
    """A valid answer derived from the name and type only, so tests can predict it."""
    name, declared = metric["metric_name"], metric.get("type", "")
    meter = meter_type(name, declared)
    if re.search(r"error|fail", name):
        signal = "errors"
    elif meter in ("histogram", "summary") or re.search(r"duration|latency", name):
        signal = "latency"
    else:
        signal = {"counter": "traffic", "gauge": "saturation"}.get(meter, "none")
    category, subcategory = next(((c, s) for p, c, s in _PREFIX_CATEGORIES if name.startswith(p)), ("other", "general"))
    return {
        "metric_name": name,
        "description": metric.get("help") or name.replace("_", " "),
        "category": category,
        "subcategory": subcategory,
        "golden_signal_type": signal,
        "golden_signal_description": GOLDEN_SIGNALS[signal],
        "meter_type": meter,
        "unit": name_unit(name) or help_unit(metric.get("help", "")),
    }


def fooled_answer(metrics: list[dict[str, Any]], marker: str) -> list[dict[str, Any]]:
    """What a model that obeyed "label everything errors" might say: every metric of the request labelled
    errors, the injecting one outside the vocabulary, plus answers for any metric names its help mentions."""
    injected = {m["metric_name"]: m["help"] for m in metrics if marker in m.get("help", "").lower()}
    mentioned = {name for text in injected.values() for name in _NAME_LIKE.findall(text)} - set(injected)
    answers = [{**deterministic_enrichment(m), "golden_signal_type": "errors"} for m in metrics]
    for answer in answers:
        if answer["metric_name"] in injected:
            answer["category"] = "errors"
    answers += [
        {**deterministic_enrichment({"metric_name": name, "type": "counter"}), "golden_signal_type": "errors"}
        for name in sorted(mentioned)
    ]
    return answers


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any
    delay: float = 0.0
    cache_key: str | None = None
    output_refund: int = 0
    """Output tokens reserved at the start (max_tokens) that the answer did not use, given back at its end."""


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int = 0
    started: float = 0.0
    stop_reason: str | None = None

    @property
    def metric_names(self) -> list[str]:
        return [m["metric_name"] for m in request_metrics(self.body)]

    @property
    def user_text(self) -> str:
        return _user_text(self.body)


def _user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages") or [{}]
    content = messages[-1].get("content", "")
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def request_metrics(body: dict[str, Any]) -> list[dict[str, Any]]:
    match = _METRICS_BLOCK.search(_user_text(body))
    return json.loads(match.group(1)) if match else []


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def prefix_tokens(body: dict[str, Any]) -> int:
    """Tokens of the tools + system prefix, the part prompt caching can store."""
    return estimate_tokens(json.dumps(body.get("tools", [])) + json.dumps(body.get("system", "")))


def input_tokens(body: dict[str, Any]) -> int:
    """Every input token of a request, as count_tokens reports it."""
    return prefix_tokens(body) + estimate_tokens(json.dumps(body.get("messages", [])))


def _rfc3339(seconds_from_now: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=max(seconds_from_now, 0.0))).isoformat().replace("+00:00", "Z")


class _Bucket:
    """A token bucket refilled continuously up to `limit` per `minute_seconds`, like the API's."""

    def __init__(self, limit: int, minute_seconds: float) -> None:
        self.limit = limit
        self.rate = limit / minute_seconds
        self.level = float(limit)
        self.updated = time.monotonic()

    def refill(self, now: float) -> None:
        self.level = min(self.limit, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def seconds_until(self, amount: int) -> float:
        return max(0.0, (min(amount, self.limit) - self.level) / self.rate)

    def seconds_to_full(self) -> float:
        return (self.limit - self.level) / self.rate


class _RateLimiter:
    """The three buckets of one model family; all calls under the server's lock."""

    NAMES = ("requests", "input-tokens", "output-tokens")

    def __init__(self, limits: RateLimits, minute_seconds: float) -> None:
        self.limits = limits
        self.minute_seconds = minute_seconds
        self.buckets = {
            "requests": _Bucket(limits.requests_per_minute, minute_seconds),
            "input-tokens": _Bucket(limits.input_tokens_per_minute, minute_seconds),
            "output-tokens": _Bucket(limits.output_tokens_per_minute, minute_seconds),
        }

    def admit(self, input_tokens: int, max_tokens: int) -> tuple[str, float] | None:
        """Charge one request, or say which limit it would exceed and for how long."""
        now = time.monotonic()
        wanted = {"requests": 1, "input-tokens": input_tokens, "output-tokens": max_tokens}
        for bucket in self.buckets.values():
            bucket.refill(now)
        for name, amount in wanted.items():
            wait = self.buckets[name].seconds_until(amount)
            if wait > 0:
                return name, wait
        for name, amount in wanted.items():
            self.buckets[name].level -= amount
        return None

    def refund_output(self, tokens: int) -> None:
        bucket = self.buckets["output-tokens"]
        bucket.refill(time.monotonic())
        bucket.level = min(bucket.limit, bucket.level + tokens)

    def headers(self) -> dict[str, str]:
        """anthropic-ratelimit-* as the API sends them: token counts left rounded to the nearest thousand."""
        now = time.monotonic()
        headers = {}
        for name, bucket in self.buckets.items():
            bucket.refill(now)
            left = max(0, math.floor(bucket.level))
            headers[f"anthropic-ratelimit-{name}-limit"] = str(bucket.limit)
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(left if name == "requests" else round(left, -3))
            headers[f"anthropic-ratelimit-{name}-reset"] = _rfc3339(bucket.seconds_to_full())
        return headers

    def describe(self, name: str) -> str:
        limit = self.buckets[name].limit
        unit = {"requests": "requests", "input-tokens": "input tokens", "output-tokens": "output tokens"}[name]
        return (
            f"This request would exceed your organization's rate limit of {limit:,} {unit} per minute. "
            "For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers "
            "for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later."
        )


@dataclass
class _Batch:
    id: str
    requests: list[dict[str, Any]]
    created: datetime
    started: float
    status: str = "in_progress"
    ended_at: datetime | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    canceled: bool = False

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        for request in self.requests:
            result = self.results.get(request["custom_id"])
            counts["processing" if result is None else result["type"]] += 1
        return counts


class MessagesAPIServer:
    """The fake API on 127.0.0.1 and a free port; `url` is the client's base_url.

    `limits` turns on rate limiting (per model family; `TIER_1` is the default model's Tier 1), `minute_seconds`
    is how long a rate-limit minute (and the cache lifetime's minute) lasts, `models` adds model names it accepts.
    """

    def __init__(
        self,
        latency: float = 0.0,
        output_tokens_per_second: float = 0.0,
        fooled_by: str = "ignore previous instructions",
        limits: RateLimits | None = None,
        minute_seconds: float = 60.0,
        models: frozenset[str] | set[str] = frozenset(),
        batch_seconds: float | None = None,
        cache_minimums: dict[str, int] | None = None,
    ) -> None:
        self.latency = latency
        self.output_tokens_per_second = output_tokens_per_second
        self.fooled_by = fooled_by.lower()
        self.limits = limits
        self.minute_seconds = minute_seconds
        self.models = set(KNOWN_MODELS) | set(models)
        self.batch_seconds = batch_seconds
        self.cache_minimums = cache_minimums or {}
        self.requests: list[RecordedRequest] = []
        self.max_in_flight = 0
        self.rate_limited = 0
        self.batches: dict[str, _Batch] = {}
        self._in_flight = 0
        self._faults: list[Fault] = []
        self._cache: dict[str, float] = {}
        self._limiters: dict[str, _RateLimiter] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-messages-api", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *faults: Fault) -> None:
        """Queue faults; each is used once, by the next request it applies to, in arrival order."""
        with self._lock:
            self._faults.extend(faults)

    def statuses(self) -> list[int]:
        """Of the Messages requests, in arrival order."""
        return [r.status for r in self.message_requests()]

    def message_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.split("?")[0] == "/v1/messages"]

    def start(self) -> MessagesAPIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> MessagesAPIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def end_batches(self) -> None:
        """Finish every batch still in progress: each request answered as /v1/messages would (faults included)."""
        for batch in self._open_batches():
            for request in batch.requests:
                batch.results.setdefault(request["custom_id"], self._batch_result(request["params"]))
            self._close(batch)

    def expire_batches(self) -> None:
        """Every batch still in progress reaches its 24 hours: whatever was not processed expires."""
        for batch in self._open_batches():
            for request in batch.requests:
                batch.results.setdefault(request["custom_id"], {"type": "expired"})
            self._close(batch)

    def _open_batches(self) -> list[_Batch]:
        with self._lock:
            return [b for b in self.batches.values() if b.status != "ended"]

    def _close(self, batch: _Batch) -> None:
        with self._lock:
            batch.status, batch.ended_at = "ended", datetime.now(UTC)

    def _take_fault(self, names: list[str]) -> Fault:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.only_for is None or fault.only_for in names:
                    return self._faults.pop(index)
        return Fault()

    def _invalid(self, body: dict[str, Any]) -> Reply | None:
        """The checks the API makes before a request runs: model, max_tokens, tools, tool_choice, cache_control."""
        model = body.get("model")
        if model not in self.models:
            return _error(404, "not_found_error", f"model: {model}")
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= MAX_OUTPUT_TOKENS:
            return _error(400, "invalid_request_error", f"max_tokens: must be an integer from 1 to {MAX_OUTPUT_TOKENS}")
        if not body.get("messages"):
            return _error(400, "invalid_request_error", "messages: at least one message is required")
        tools = body.get("tools") or []
        for index, tool in enumerate(tools):
            schema = tool.get("input_schema") if isinstance(tool, dict) else None
            if not _TOOL_NAME.match(str(tool.get("name", "")) if isinstance(tool, dict) else ""):
                return _error(400, "invalid_request_error", f"tools.{index}.name: String should match {_TOOL_NAME}")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                return _error(400, "invalid_request_error", f"tools.{index}.input_schema: type must be 'object'")
        choice = body.get("tool_choice")
        tool_names = {t.get("name") for t in tools if isinstance(t, dict)}
        if isinstance(choice, dict) and choice.get("type") == "tool" and choice.get("name") not in tool_names:
            return _error(400, "invalid_request_error", f"tool_choice: no tool named {choice.get('name')!r}")
        system = body.get("system")
        blocks = [*(system if isinstance(system, list) else []), *tools]
        if sum("cache_control" in b for b in blocks if isinstance(b, dict)) > MAX_CACHE_BREAKPOINTS:
            return _error(
                400, "invalid_request_error", f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control"
            )
        return None

    def respond(self, headers: dict[str, str], body: dict[str, Any], rate_limit: bool = True) -> Reply:
        """What to answer to one request, and after how long (rate limits aside when `rate_limit` is off)."""
        invalid = self._invalid(body)
        if invalid is not None:
            return invalid
        metrics = request_metrics(body)
        fault = self._take_fault([m["metric_name"] for m in metrics])
        if fault.body is not None:
            return Reply(fault.status, fault.headers, fault.body(headers, body), fault.delay)
        usage, cache_key = self._input_usage(body)
        limiter = self._limiter(body["model"]) if rate_limit else None
        if limiter is not None:
            with self._lock:
                refused = limiter.admit(
                    usage["input_tokens"] + usage.get("cache_creation_input_tokens", 0), body["max_tokens"]
                )
                if refused:
                    self.rate_limited += 1
                    name, wait = refused
                    retry = math.ceil(wait) if self.minute_seconds >= 60 else round(wait + 0.001, 3)
                    return _error(429, "rate_limit_error", limiter.describe(name), {"retry-after": f"{retry:g}"})
        fooled = any(self.fooled_by in m.get("help", "").lower() for m in metrics)
        answers = fooled_answer(metrics, self.fooled_by) if fooled else [deterministic_enrichment(m) for m in metrics]
        tool_input: Any = {"metrics": answers}
        if fault.edit is not None:
            tool_input = fault.edit(tool_input)
        stop_reason = fault.stop_reason or "tool_use"
        output_tokens = estimate_tokens(json.dumps(tool_input)) if tool_input is not None else 5
        if output_tokens > body["max_tokens"]:
            tool_input, output_tokens, stop_reason = (
                _cut(tool_input, body["max_tokens"]),
                body["max_tokens"],
                "max_tokens",
            )
        delay = self.latency + fault.delay
        if self.output_tokens_per_second:
            delay += output_tokens / self.output_tokens_per_second
        content = [] if tool_input is None else [_tool_use(body, tool_input)]
        message = {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"output_tokens": output_tokens, **usage},
        }
        refund = body["max_tokens"] - output_tokens if limiter is not None else 0
        return Reply(fault.status, fault.headers, message, delay, cache_key, refund)

    def _limiter(self, model: str) -> _RateLimiter | None:
        if self.limits is None:
            return None
        with self._lock:
            family = model_family(model)
            if family not in self._limiters:
                self._limiters[family] = _RateLimiter(self.limits, self.minute_seconds)
            return self._limiters[family]

    def _input_usage(self, body: dict[str, Any]) -> tuple[dict[str, int], str | None]:
        """Input tokens, split like the API does when the tools + system prefix carries cache_control and is long
        enough to be cached for the model; shorter prefixes are silently not cached."""
        system = body.get("system", "")
        prefix = prefix_tokens(body)
        rest = estimate_tokens(json.dumps(body["messages"]))
        marked = isinstance(system, list) and any("cache_control" in block for block in system)
        minimum = self.cache_minimums.get(body["model"]) or cache_minimum_tokens(body["model"])
        if not marked or prefix < minimum:
            return {"input_tokens": rest + prefix, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}, None
        digest = hashlib.sha256(
            (body["model"] + json.dumps(body.get("tools")) + json.dumps(system)).encode()
        ).hexdigest()
        with self._lock:
            hit = self._cache.get(digest, -math.inf) > time.monotonic()
            if hit:
                self._cache[digest] = time.monotonic() + CACHE_LIFETIME_MINUTES * self.minute_seconds
        usage = {
            "input_tokens": rest,
            "cache_creation_input_tokens": 0 if hit else prefix,
            "cache_read_input_tokens": prefix if hit else 0,
        }
        return usage, None if hit else digest

    def _remember_prefix(self, digest: str | None) -> None:
        """Like the API, a cache entry is usable once the response that wrote it begins."""
        if digest is not None:
            with self._lock:
                self._cache[digest] = time.monotonic() + CACHE_LIFETIME_MINUTES * self.minute_seconds

    def _track_in_flight(self, change: int) -> None:
        with self._lock:
            self._in_flight += change
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _rate_headers(self, body: dict[str, Any]) -> dict[str, str]:
        limiter = self._limiter(body.get("model", "")) if body.get("model") in self.models else None
        if limiter is None:
            return {}
        with self._lock:
            return limiter.headers()

    def _finish(self, reply: Reply, body: dict[str, Any]) -> None:
        if reply.output_refund and (limiter := self._limiter(body["model"])):
            with self._lock:
                limiter.refund_output(reply.output_refund)

    def _batch_result(self, params: dict[str, Any]) -> dict[str, Any]:
        reply = self.respond({}, params, rate_limit=False)
        self._remember_prefix(reply.cache_key)  # requests of a batch share the cache too (on a best-effort basis)
        if reply.status == 200:
            return {"type": "succeeded", "message": reply.body}
        return {"type": "errored", "error": reply.body}

    def _create_batch(self, body: dict[str, Any]) -> Reply:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return _error(400, "invalid_request_error", "requests: at least one request is required")
        ids = [r.get("custom_id") for r in requests if isinstance(r, dict)]
        if len(ids) != len(requests) or not all(isinstance(i, str) and _CUSTOM_ID.match(i) for i in ids):
            return _error(400, "invalid_request_error", f"requests: each custom_id must match {_CUSTOM_ID.pattern}")
        if len(set(ids)) != len(ids):
            return _error(400, "invalid_request_error", "requests: custom_id values must be unique within a batch")
        for index, request in enumerate(requests):
            invalid = self._invalid(request.get("params") or {})
            if invalid is not None:
                message = invalid.body["error"]["message"]
                return _error(400, "invalid_request_error", f"requests.{index}.params.{message}")
        batch = _Batch(f"msgbatch_{uuid.uuid4().hex[:24]}", requests, datetime.now(UTC), time.monotonic())
        with self._lock:
            self.batches[batch.id] = batch
        return Reply(200, {}, self._batch_json(batch))

    def _batch_json(self, batch: _Batch) -> dict[str, Any]:
        running = time.monotonic() - batch.started
        if self.batch_seconds is not None and batch.status != "ended" and running >= self.batch_seconds:
            self.end_batches()
        ended = batch.status == "ended"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": batch.status,
            "request_counts": batch.counts(),
            "created_at": batch.created.isoformat().replace("+00:00", "Z"),
            "expires_at": (batch.created + timedelta(hours=24)).isoformat().replace("+00:00", "Z"),
            "ended_at": batch.ended_at.isoformat().replace("+00:00", "Z") if batch.ended_at else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    def _batch_route(self, method: str, path: str) -> Reply:
        parts = path.strip("/").split("/")  # v1 messages batches {id} [results|cancel]
        batch = self.batches.get(parts[3]) if len(parts) >= 4 else None
        if batch is None:
            return _error(404, "not_found_error", f"message batch not found: {path}")
        if len(parts) == 4 and method == "GET":
            return Reply(200, {}, self._batch_json(batch))
        if len(parts) == 5 and parts[4] == "results" and method == "GET":
            if batch.status != "ended":
                return _error(400, "invalid_request_error", "batch results are available once processing has ended")
            lines = [{"custom_id": r["custom_id"], "result": batch.results[r["custom_id"]]} for r in batch.requests]
            return Reply(200, {"content-type": "application/binary"}, "\n".join(map(json.dumps, lines)).encode())
        if len(parts) == 5 and parts[4] == "cancel" and method == "POST":
            for request in batch.requests:
                batch.results.setdefault(request["custom_id"], {"type": "canceled"})
            self._close(batch)
            return Reply(200, {}, self._batch_json(batch))
        return _error(404, "not_found_error", f"no route: {method} {path}")

    def _route(self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        if method == "POST" and path == "/v1/messages":
            return self.respond(headers, body)
        if method == "POST" and path == "/v1/messages/count_tokens":
            return self._invalid({**body, "max_tokens": 1}) or Reply(200, {}, {"input_tokens": input_tokens(body)})
        if method == "POST" and path == "/v1/messages/batches":
            return self._create_batch(body)
        if path.startswith("/v1/messages/batches/"):
            return self._batch_route(method, path)
        return _error(404, "not_found_error", f"no route: {method} {path}")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def do_GET(self) -> None:
                self._serve("GET", {})

            def do_POST(self) -> None:
                self._serve("POST", json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}"))

            def _serve(self, method: str, body: dict[str, Any]) -> None:
                path = self.path.split("?")[0]
                record = RecordedRequest(
                    path, {k.lower(): v for k, v in self.headers.items()}, body, 0, time.monotonic()
                )
                server.requests.append(record)
                reply = server._route(method, path, record.headers, body)
                record.status = reply.status
                record.stop_reason = reply.body.get("stop_reason") if isinstance(reply.body, dict) else None
                server._track_in_flight(+1)
                time.sleep(reply.delay)
                server._track_in_flight(-1)
                server._remember_prefix(reply.cache_key)
                if path == "/v1/messages" and reply.status == 200:
                    server._finish(reply, body)
                request_id = f"req_{uuid.uuid4().hex[:24]}"
                if isinstance(reply.body, dict) and reply.body.get("type") == "error":
                    reply.body.setdefault("request_id", request_id)
                data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                extra = server._rate_headers(body) if path == "/v1/messages" else {}
                try:
                    self.send_response(reply.status)
                    headers = {"content-type": "application/json", "request-id": request_id, **extra, **reply.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test): nothing left to answer

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests assert on `requests`, not on an access log."""

        return Handler


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, headers or {}, {"type": "error", "error": {"type": kind, "message": message}})


def _tool_use(body: dict[str, Any], tool_input: Any) -> dict[str, Any]:
    name = (body.get("tool_choice") or {}).get("name") or body["tools"][0]["name"]
    return {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": name, "input": tool_input}


def _cut(tool_input: Any, max_tokens: int) -> Any:
    """What fits in max_tokens: the whole entries written before the limit was reached."""
    if not isinstance(tool_input, dict) or not isinstance(tool_input.get("metrics"), list):
        return {}
    kept: list[Any] = []
    for item in tool_input["metrics"]:
        if estimate_tokens(json.dumps({"metrics": [*kept, item]})) > max_tokens:
            break
        kept.append(item)
    return {"metrics": kept}
