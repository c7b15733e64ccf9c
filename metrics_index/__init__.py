"""metrics-index: a searchable, LLM-enriched catalog of Prometheus metrics, as Dagster assets."""
