"""Where raw metric metadata comes from: a live Prometheus or a snapshot file."""

from metrics_index.sources.base import RAW_COLUMNS, RawMetric, SourceError

__all__ = ["RAW_COLUMNS", "RawMetric", "SourceError"]
