"""The unit a metric really has, spelled out: resolved once at enrichment and stored in the catalog's `unit`
column, which search, the metric card and the checks read.

Prometheus metadata rarely declares a unit (not one metric of the bundled snapshot does), so the unit is, in
order: the declared unit (a name suffix may sharpen it: `_timestamp_seconds` is seconds since the epoch), the
unit suffix of the name (`_seconds`, `_bytes`, after `_total` and friends), then an "in <unit>" phrase of the
help text ("Uptime of the protocol in seconds"). A metric without any of them has no unit ("").
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Suffix:
    """A unit suffix of a metric name (after `_total` and friends are stripped)."""

    suffix: str
    unit: str


UNIT_SUFFIXES: tuple[Suffix, ...] = (
    Suffix("_timestamp_seconds", "seconds since the Unix epoch"),
    Suffix("_seconds", "seconds"),
    Suffix("_sec", "seconds"),
    Suffix("_milliseconds", "milliseconds"),
    Suffix("_ms", "milliseconds"),
    Suffix("_microseconds", "microseconds"),
    Suffix("_usec", "microseconds"),
    Suffix("_nanoseconds", "nanoseconds"),
    Suffix("_bytes", "bytes"),
    Suffix("_bits", "bits"),
    Suffix("_ratio", "ratio"),
    Suffix("_percent", "percent"),
    Suffix("_percentage", "percent"),
    Suffix("_hertz", "hertz"),
    Suffix("_celsius", "degrees Celsius"),
    Suffix("_volts", "volts"),
    Suffix("_amperes", "amperes"),
    Suffix("_watts", "watts"),
    Suffix("_joules", "joules"),
    Suffix("_meters", "meters"),
    Suffix("_grams", "grams"),
)
SERIES_SUFFIXES = ("_total", "_count", "_sum", "_bucket", "_created", "_info")
"""Suffixes of a family's series (and of counters and info metrics) that come after the unit."""

UNITS: tuple[str, ...] = tuple(dict.fromkeys(s.unit for s in UNIT_SUFFIXES))
"""The units an enricher may answer, spelled as stored ("" is no unit)."""

_SPELLED = {s.suffix.removeprefix("_"): s.unit for s in UNIT_SUFFIXES} | {unit.lower(): unit for unit in UNITS}
_IN_UNIT = re.compile(
    r"\b(?:in|as)\s+("
    + "|".join(sorted((re.escape(w) for w in _SPELLED if " " not in w), key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)


def without_series_suffix(name: str) -> str:
    """The name without `_total`, `_count`, `_sum`, `_bucket`, `_created` and `_info`."""
    for suffix in SERIES_SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def name_unit(name: str) -> str:
    """The unit the name's suffix says, spelled out; empty when it says none."""
    base = without_series_suffix(name)
    return next((s.unit for s in UNIT_SUFFIXES if base.endswith(s.suffix)), "")


def spelled_unit(declared: str) -> str:
    """A declared unit as stored (`celsius` -> degrees Celsius); one outside the table is kept as declared."""
    declared = " ".join(declared.split())
    return _SPELLED.get(declared.lower(), declared)


def help_unit(help_text: str) -> str:
    """The unit an "in <unit>" phrase of the help text names ("Uptime in seconds"); empty when there is none."""
    found = _IN_UNIT.search(help_text)
    return _SPELLED[found.group(1).lower()] if found else ""


def unit_of(name: str, declared: str = "", help_text: str = "", answered: str = "") -> str:
    """The metric's unit: declared (sharpened by the name), else the name's, else `answered` (an enricher's
    validated answer), else the help text's."""
    from_name = name_unit(name)
    if declared.strip():
        spelled = spelled_unit(declared)
        return from_name if from_name.startswith(spelled) else spelled
    return from_name or answered or help_unit(help_text)
