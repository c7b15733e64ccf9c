"""The two Dagster instance files: deploy/dagster-postgres.yaml is metrics_index/data/dagster.yaml with Postgres
storage. Nothing else may differ, comments included (they carry the reasons for the limits), so that a change to one
that is not made to the other fails here rather than drifting silently."""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _without_header(text: str) -> str:
    """The text after the leading comment lines and blank lines (the file's own description)."""
    lines = text.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    return "".join(lines[first:])


def test_the_postgres_instance_file_is_the_default_one_with_postgres_storage_and_nothing_else() -> None:
    sqlite = (ROOT / "metrics_index" / "data" / "dagster.yaml").read_text()
    postgres = (ROOT / "deploy" / "dagster-postgres.yaml").read_text()
    shared = _without_header(sqlite)
    assert "storage" not in yaml.safe_load(shared)
    tail = postgres.splitlines()[-len(shared.splitlines()) :]
    differences = difflib.unified_diff(
        shared.splitlines(), tail, "data/dagster.yaml", "dagster-postgres.yaml", lineterm=""
    )
    assert postgres.endswith(shared), "\n".join(differences)
    before = yaml.safe_load(postgres[: -len(shared)])
    assert list(before) == ["storage"] and list(before["storage"]) == ["postgres"]
    assert {key: value for key, value in yaml.safe_load(postgres).items() if key != "storage"} == yaml.safe_load(sqlite)
