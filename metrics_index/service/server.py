"""Run the service with uvicorn: `metrics-index serve`."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import uvicorn

from metrics_index.service.app import create_app
from metrics_index.service.catalog import UnknownNamespaceError
from metrics_index.service.core import CatalogService
from metrics_index.service.limits import BadRequest, parse_namespace

log = logging.getLogger(__name__)


def serve(
    env: Mapping[str, str] = os.environ, host: str = "127.0.0.1", port: int = 8765, preload: Sequence[str] = ()
) -> None:
    """Load `preload` namespaces (all indexed ones for `all`), then answer on HOST:PORT until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = CatalogService(env)
    namespaces = [item["namespace"] for item in service.list_namespaces()] if list(preload) == ["all"] else preload
    for namespace in namespaces:
        try:
            service.catalog.get(parse_namespace(namespace))
        except (BadRequest, UnknownNamespaceError) as error:
            log.warning("not preloading %s: %s", namespace, error or "no indexed documents")
    app = create_app(service, env)
    log.info("metrics-index service on http://%s:%d (API /v1, MCP /mcp, docs /docs)", host, port)
    uvicorn.run(app, host=host, port=port, access_log=False, log_config=None)
