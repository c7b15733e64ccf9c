"""A local stand-in for the Anthropic Messages API, so the real `anthropic` client can be tested offline.

It answers POST /v1/messages with a `tool_use` block holding a deterministic enrichment of the metrics in
the request (read from the `<metrics>` JSON block of the user message) and a `usage` that models prompt
caching: the first request with a given tools + system prefix writes it, later ones read it. Faults are
scripted per request (429 with retry-after, 529, 500, slow replies, broken or incomplete answers), every
request is recorded, and a configurable marker in help text makes it answer like a model that obeyed an
injected instruction.

Tests use the `messages_api` fixture (conftest.py); the benchmark uses `MessagesAPIServer` as a context manager.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from metrics_index.enrichment.vocabulary import GOLDEN_SIGNALS, METER_TYPES

ToolInputEdit = Callable[[dict[str, Any]], Any]
"""Changes the tool input the server would answer with (a dict with a `metrics` list)."""
BodyFactory = Callable[[dict[str, str], dict[str, Any]], Any]
"""Builds a whole response body from the request headers and JSON body."""

_METRICS_BLOCK = re.compile(r"<metrics>(.*?)</metrics>", re.S)
_NAME_LIKE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
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


@dataclass
class Fault:
    """What the server does with one request instead of (or on top of) a plain answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: BodyFactory | None = None
    edit: ToolInputEdit | None = None
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


def for_metric(name: str, *faults: Fault) -> list[Fault]:
    """The same faults, used only by requests that ask about `name`."""
    return [replace(fault, only_for=name) for fault in faults]


def slow(seconds: float) -> Fault:
    return Fault(delay=seconds)


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
    meter = declared if declared in METER_TYPES else "unknown"
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


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int = 0

    @property
    def metric_names(self) -> list[str]:
        return [m["metric_name"] for m in request_metrics(self.body)]

    @property
    def user_text(self) -> str:
        return _user_text(self.body)


def _user_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def request_metrics(body: dict[str, Any]) -> list[dict[str, Any]]:
    match = _METRICS_BLOCK.search(_user_text(body))
    return json.loads(match.group(1)) if match else []


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


class MessagesAPIServer:
    """The fake API on 127.0.0.1 and a free port; `url` is the client's base_url."""

    def __init__(
        self,
        latency: float = 0.0,
        output_tokens_per_second: float = 0.0,
        fooled_by: str = "ignore previous instructions",
    ) -> None:
        self.latency = latency
        self.output_tokens_per_second = output_tokens_per_second
        self.fooled_by = fooled_by.lower()
        self.requests: list[RecordedRequest] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._faults: list[Fault] = []
        self._cached_prefixes: set[str] = set()
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
        return [r.status for r in self.requests]

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

    def _take_fault(self, names: list[str]) -> Fault:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.only_for is None or fault.only_for in names:
                    return self._faults.pop(index)
        return Fault()

    def respond(self, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        """What to answer to one request, and after how long."""
        metrics = request_metrics(body)
        fault = self._take_fault([m["metric_name"] for m in metrics])
        if fault.body is not None:
            return Reply(fault.status, fault.headers, fault.body(headers, body), fault.delay)
        fooled = any(self.fooled_by in m.get("help", "").lower() for m in metrics)
        answers = fooled_answer(metrics, self.fooled_by) if fooled else [deterministic_enrichment(m) for m in metrics]
        tool_input: Any = {"metrics": answers}
        if fault.edit is not None:
            tool_input = fault.edit(tool_input)
        output_tokens = estimate_tokens(json.dumps(tool_input))
        delay = self.latency + fault.delay
        if self.output_tokens_per_second:
            delay += output_tokens / self.output_tokens_per_second
        input_usage, prefix_digest = self._input_usage(body)
        message = {
            "id": f"msg_{len(self.requests):06d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": [{"type": "tool_use", "id": "toolu_0", "name": body["tools"][0]["name"], "input": tool_input}],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"output_tokens": output_tokens, **input_usage},
        }
        return Reply(fault.status, fault.headers, message, delay, prefix_digest)

    def _input_usage(self, body: dict[str, Any]) -> tuple[dict[str, int], str | None]:
        """Input tokens, split like the API does when the tools + system prefix carries cache_control."""
        system = body.get("system", "")
        prefix_text = json.dumps(body.get("tools", [])) + json.dumps(system)
        rest = estimate_tokens(json.dumps(body["messages"]))
        cacheable = isinstance(system, list) and any("cache_control" in block for block in system)
        if not cacheable:
            return {"input_tokens": rest + estimate_tokens(prefix_text)}, None
        digest = hashlib.sha256(prefix_text.encode()).hexdigest()
        with self._lock:
            hit = digest in self._cached_prefixes
        prefix = estimate_tokens(prefix_text)
        usage = {
            "input_tokens": rest,
            "cache_creation_input_tokens": 0 if hit else prefix,
            "cache_read_input_tokens": prefix if hit else 0,
        }
        return usage, digest

    def _track_in_flight(self, change: int) -> None:
        with self._lock:
            self._in_flight += change
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _remember_prefix(self, digest: str | None) -> None:
        """Like the API, a cache entry is usable once the response that wrote it begins."""
        if digest is not None:
            with self._lock:
                self._cached_prefixes.add(digest)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                record = RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                server.requests.append(record)
                if self.path.split("?")[0] != "/v1/messages":
                    reply = Reply(404, {}, error_body("not_found_error", self.path)({}, {}))
                else:
                    reply = server.respond(record.headers, body)
                record.status = reply.status
                server._track_in_flight(+1)
                time.sleep(reply.delay)
                server._track_in_flight(-1)
                server._remember_prefix(reply.cache_key)
                data = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    for name, value in {"content-type": "application/json", **reply.headers}.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test): nothing left to answer

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests assert on `requests`, not on an access log."""

        return Handler
