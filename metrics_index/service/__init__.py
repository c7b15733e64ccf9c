"""`metrics-index serve`: the catalog as a long-running HTTP service (app.py), its warm namespaces (catalog.py),
its own Prometheus metrics (telemetry.py), and the small client the CLI uses when METRICS_INDEX_URL is set
(client.py)."""
