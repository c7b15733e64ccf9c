"""Fault drills with real processes, shared by test_concurrency.py and bench/concurrency.py.

- `Drill`: one home (catalog, embedded Chroma or a Chroma server) and one Redis, with two registries that give the
  namespace `acme:node` different data (B drops every third metric of A and rewords the rest), plus a bystander
  namespace neither run touches.
- `index_at_once`: two `metrics-index index acme:node` processes started together, one per registry.
- `stores_check`: from a fresh process, whether Redis, the Parquet catalog and Chroma agree, and whether every
  namespace can still be read (a crash of that process is a corrupt store).
- `SearchLoop`: a process that warms `api.search_metrics` and then searches in a loop, counting errors and empty
  answers, while other processes re-index.

The checker and the search loop are the script drill_worker.py, run with whatever `metrics_index` is first on
PYTHONPATH, so the bench can drill another checkout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from metrics_index.testing import drill_worker
from metrics_index.testing.drill_worker import STOP_FILE

SNAPSHOT = Path(__file__).resolve().parents[1] / "data" / "demo-targets-metadata.json"
NAMESPACE = "acme:node"
BYSTANDER = "acme:prometheus"


@dataclass
class Drill:
    """A home and two registries giving `acme:node` data A or B; `env(variant)` is what a process of it runs with."""

    home: Path
    redis_url: str
    chroma_host: str = ""
    chroma_port: int = 0
    pythonpath: str = ""
    node_metrics: int | None = None  # fewer metrics for a quicker drill
    extra_env: dict[str, str] = field(default_factory=dict)

    def prepare(self) -> Drill:
        self.home.mkdir(parents=True, exist_ok=True)
        entries = json.loads(SNAPSHOT.read_text())["data"]
        node = [entry for entry in entries if entry["target"]["job"] == "node"][: self.node_metrics]
        variant_b = [{**entry, "help": f"{entry['help']} (revised)"} for i, entry in enumerate(node) if i % 3]
        others = [entry for entry in entries if entry["target"]["job"] == "prometheus"][: self.node_metrics]
        for variant, data in (("a", node), ("b", variant_b)):
            (self.home / f"{variant}.json").write_text(json.dumps({"status": "success", "data": data + others}))
            registry = {
                "namespaces": {
                    NAMESPACE: {"snapshot": f"{variant}.json", "selector": '{job="node"}'},
                    BYSTANDER: {"snapshot": f"{variant}.json", "selector": '{job="prometheus"}'},
                }
            }
            (self.home / f"registry-{variant}.yaml").write_text(yaml.safe_dump(registry))
        return self

    def env(self, variant: str = "a") -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("METRICS_INDEX_", "DAGSTER_HOME", "ANTHROPIC_"))
        }
        env.update(
            METRICS_INDEX_HOME=str(self.home),
            METRICS_INDEX_REGISTRY=str(self.home / f"registry-{variant}.yaml"),
            METRICS_INDEX_REDIS_URL=self.redis_url,
            METRICS_INDEX_ENRICHER="rules",
            **self.extra_env,
        )
        if self.chroma_host:
            env.update(METRICS_INDEX_CHROMA_HOST=self.chroma_host, METRICS_INDEX_CHROMA_PORT=str(self.chroma_port))
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return env

    def index(self, variant: str, *namespaces: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "metrics_index.cli", "index", *(namespaces or (NAMESPACE,))],
            env=self.env(variant),
            cwd=self.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def run(self, variant: str, *namespaces: str, timeout: float) -> RunOutcome:
        return _finish(self.index(variant, *namespaces), timeout)

    def index_at_once(self, timeout: float) -> list[RunOutcome]:
        """Index `acme:node` from both registries at the same moment; a run still going after `timeout` is killed."""
        runs = [self.index("a"), self.index("b")]
        return [_finish(run, timeout) for run in runs]

    def stores_check(self, timeout: float = 120.0) -> dict:
        """What a fresh process finds: per namespace, the differences between the stores (empty when they agree),
        and `error` when a store could not be read (exit code 139: a segfault)."""
        run = subprocess.Popen(
            [sys.executable, "-P", drill_worker.__file__, "check", NAMESPACE, BYSTANDER],
            env=self.env(),
            cwd=self.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        outcome = _finish(run, timeout)
        if outcome.code != 0:
            return {"error": f"checker exit {outcome.code}: {outcome.stderr.strip().splitlines()[-1:]}"}
        return json.loads(outcome.stdout)

    def search_loop(self, searches: int) -> SearchLoop:
        return SearchLoop(
            subprocess.Popen(
                [sys.executable, "-P", drill_worker.__file__, "search", NAMESPACE, str(searches)],
                env=self.env(),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )


@dataclass
class RunOutcome:
    code: int | None  # None: killed after the timeout (a hang)
    stdout: str
    stderr: str


def _finish(run: subprocess.Popen, timeout: float) -> RunOutcome:
    try:
        stdout, stderr = run.communicate(timeout=timeout)
        return RunOutcome(run.returncode, stdout, stderr)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        stdout, stderr = run.communicate()
        return RunOutcome(None, stdout, stderr)


@dataclass
class SearchLoop:
    """The search process: `ready()` once it is warm, then `result()` when its searches are done."""

    process: subprocess.Popen

    def ready(self, timeout: float = 300.0) -> None:
        line = self.process.stdout.readline() if self.process.stdout else ""
        if line.strip() != "warm":
            raise RuntimeError(f"search loop did not warm up: {line!r} {self.process.stderr.read()[-2000:]}")

    def running(self) -> bool:
        return self.process.poll() is None

    def stop_at(self, home: Path, variant: str) -> None:
        """Let the loop end once its answers come from `variant` (the data the last re-index wrote)."""
        (home / STOP_FILE).write_text(variant)

    def result(self, timeout: float) -> dict:
        outcome = _finish(self.process, timeout)
        if outcome.code != 0:
            return {"error": f"search loop exit {outcome.code}: {outcome.stderr.strip()[-500:]}"}
        return json.loads(outcome.stdout.strip().splitlines()[-1])
