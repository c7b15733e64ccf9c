"""The raw metric record every source produces."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

RAW_COLUMNS = ("metric_name", "type", "help", "unit")


class SourceError(RuntimeError):
    """Prometheus (or a snapshot) could not give a usable answer; the message says what and where."""


@dataclass(frozen=True)
class RawMetric:
    metric_name: str
    type: str
    help: str
    unit: str

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> list[RawMetric]:
        return [cls(*row) for row in frame[list(RAW_COLUMNS)].itertuples(index=False, name=None)]
