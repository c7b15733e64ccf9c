"""The figures assets record round-trip through Dagster metadata unchanged (the CLI summary reads them back)."""

from dagster import MetadataValue

from metrics_index.asset_metadata import EnrichmentFigures, RawFigures


def test_figures_survive_the_trip_through_metadata() -> None:
    raw = RawFigures(fetched=3, metrics=2, with_help=2, types={"gauge": 2}, duration_seconds=0.1)
    assert raw.metadata()["types"] == MetadataValue.json({"gauge": 2})
    plain = {key: getattr(value, "value", value) for key, value in raw.metadata().items()}
    assert RawFigures.from_metadata({**plain, "path": "/elsewhere"}) == raw

    enriched = EnrichmentFigures("claude", 2, 1, 1, 0, 1.0, {}, 0.2, usage={"requests": 1.0, "cost_usd": 0.01})
    metadata = enriched.metadata()
    assert (metadata["llm_requests"], metadata["llm_cost_usd"]) == (1.0, 0.01) and "usage" not in metadata
    plain = {key: getattr(value, "value", value) for key, value in metadata.items()}
    assert EnrichmentFigures.from_metadata(plain) == enriched
