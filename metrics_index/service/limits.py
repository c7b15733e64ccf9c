"""The limits and rules every entry point applies to its input (HTTP, MCP, the CLI's feedback), with the errors
the transports turn into 400 and 404 answers. Loads nothing heavy."""

from __future__ import annotations

from collections.abc import Sequence

from metrics_index.namespaces import Namespace, NamespaceError

MAX_QUESTION_CHARS = 1000
MAX_K = 100
MAX_NAMES = 1000
MAX_NAME_CHARS = 200


class BadRequest(ValueError):
    """The caller's input breaks a documented limit or rule (HTTP 400)."""


class NotFound(LookupError):
    """The namespace or metric does not exist (HTTP 404); `suggestions` are close names that do (a likely typo)."""

    def __init__(self, message: str, suggestions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.suggestions = tuple(suggestions)


def parse_namespace(namespace: str) -> str:
    try:
        return str(Namespace.parse(namespace))
    except NamespaceError as error:
        raise BadRequest(str(error)) from None


def check_question(question: str) -> str:
    if not question or not question.strip():
        raise BadRequest("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise BadRequest(f"the question has {len(question)} characters; at most {MAX_QUESTION_CHARS} are accepted")
    return question.strip()


def check_metric_name(metric: str) -> str:
    if not metric or len(metric) > MAX_NAME_CHARS:
        raise BadRequest(f"a metric name has 1 to {MAX_NAME_CHARS} characters")
    return metric
