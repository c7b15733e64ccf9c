"""Keep secrets (the Anthropic API key, the Slack webhook) out of everything metrics-index prints or stores.

A failing endpoint may echo part of a key: any run of 8 or more characters that also occurs in a secret is
redacted, not only the whole key. `redact` is for error texts before they are recorded (the `error` column, run
metadata, the CLI); `install_log_redaction` covers log records of the Anthropic SDK and its HTTP client, whose
debug logging (`ANTHROPIC_LOG=debug`) prints request and response headers into run logs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

SECRET_VARIABLES = ("ANTHROPIC_API_KEY", "METRICS_INDEX_SLACK_WEBHOOK_URL")
MIN_FRAGMENT = 8
"""Shortest run of a secret's characters that is redacted; shorter runs are too likely to be ordinary text."""
REDACTED = "[redacted]"
_HTTP_LOGGERS = ("anthropic", "httpx", "httpcore")


def secrets_from_env(env: Mapping[str, str] = os.environ) -> list[str]:
    return [value for name in SECRET_VARIABLES if (value := env.get(name, "").strip())]


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` with every run of at least `MIN_FRAGMENT` characters found in one of the secrets (by default those in
    the environment) replaced by `[redacted]`; a secret shorter than that is replaced where it occurs whole."""
    secrets = list(secrets_from_env() if secrets is None else secrets)
    if not text or not secrets:
        return text
    covered = bytearray(len(text))
    for secret in secrets:
        if len(secret) < MIN_FRAGMENT:
            _cover_whole(text, secret, covered)
            continue
        fragments = {secret[i : i + MIN_FRAGMENT] for i in range(len(secret) - MIN_FRAGMENT + 1)}
        for start in range(len(text) - MIN_FRAGMENT + 1):
            if text[start : start + MIN_FRAGMENT] in fragments:
                covered[start : start + MIN_FRAGMENT] = b"\1" * MIN_FRAGMENT
    if not any(covered):
        return text
    parts, position = [], 0
    while position < len(text):
        end = position
        while end < len(text) and covered[end] == covered[position]:
            end += 1
        parts.append(REDACTED if covered[position] else text[position:end])
        position = end
    return "".join(parts)


def _cover_whole(text: str, secret: str, covered: bytearray) -> None:
    start = text.find(secret)
    while secret and start != -1:
        covered[start : start + len(secret)] = b"\1" * len(secret)
        start = text.find(secret, start + 1)


class _RedactingRecordFactory:
    """Wraps the log record factory: records of the SDK's and the HTTP client's loggers are formatted at once and
    redacted, before any handler (a terminal, a Dagster compute log) sees them."""

    def __init__(self, wrapped: object) -> None:
        self.wrapped = wrapped

    def __call__(self, *args: object, **kwargs: object) -> logging.LogRecord:
        record = self.wrapped(*args, **kwargs)  # type: ignore[operator]
        if isinstance(record.name, str) and record.name.startswith(_HTTP_LOGGERS):
            message = redact(record.getMessage())
            record.msg, record.args = message, None
            if record.exc_info and not record.exc_text:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return record


def install_log_redaction() -> None:
    """Idempotent: every later log record of the Anthropic SDK, httpx and httpcore is redacted."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _RedactingRecordFactory):
        logging.setLogRecordFactory(_RedactingRecordFactory(current))
