"""A client of the search service on the standard library only, so a CLI call that asks the service starts fast."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

URL_ENV = "METRICS_INDEX_URL"
TOKEN_ENV = "METRICS_INDEX_TOKEN"


class ServiceError(RuntimeError):
    """The service refused the request (its JSON error message) or could not be reached."""

    def __init__(self, message: str, status: int | None = None, suggestions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.suggestions = tuple(suggestions)


class ServiceClient:
    def __init__(self, base_url: str, token: str = "", timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def search(self, namespace: str, question: str, k: int = 10, explain: bool = False) -> dict[str, Any]:
        return self._post("/v1/search", {"namespace": namespace, "question": question, "k": k, "explain": explain})

    def validate(self, namespace: str, names: list[str]) -> dict[str, Any]:
        return self._post("/v1/validate", {"namespace": namespace, "names": names})

    def feedback(self, namespace: str, question: str, metric: str, good: bool) -> dict[str, Any]:
        return self._post(
            "/v1/feedback", {"namespace": namespace, "question": question, "metric": metric, "good": good}
        )

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            self.base_url + path, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            message, suggestions = _error(error.read())
            raise ServiceError(message or f"HTTP {error.code}", error.code, suggestions) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise ServiceError(f"cannot reach the metrics-index service at {self.base_url}: {reason}") from None


def _error(body: bytes) -> tuple[str, list[str]]:
    """The message of the service's JSON error and its suggestions (close names, for a typo)."""
    try:
        error = json.loads(body)["error"]
        return str(error["message"]), [str(s) for s in error.get("suggestions") or []]
    except (ValueError, KeyError, TypeError, AttributeError):
        return "", []
