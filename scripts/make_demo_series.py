"""Re-make metrics_index/data/demo-series.json.gz: the `/api/v1/series` answer of a real Prometheus scraping the six
demo jobs (prometheus, node, redis, alertmanager, blackbox, pushgateway) from the Debian packages, on free 127.0.0.1
ports. Instance labels are rewritten to `<job>:9100` as in the bundled metadata snapshot, and the host's name to
`demo-host`, so the file says nothing about the machine that made it.

Run through scripts/make-demo-series.sh, which installs the Debian packages first.
"""

from __future__ import annotations

import gzip
import json
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from metrics_index.testing.servers import (
    LOOPBACK,
    ManagedProcess,
    RedisServer,
    free_port,
    http_get,
    prometheus_process,
    system_binary,
    wait_until,
)

OUTPUT = Path(__file__).resolve().parent.parent / "metrics_index" / "data" / "demo-series.json.gz"
JOBS = ("prometheus", "node", "redis", "alertmanager", "blackbox", "pushgateway")
SCRAPES = 20  # scrapes of every target (one a second) before the series are read
HOST_LABELS = ("nodename", "domainname")


def exporters(directory: Path, redis_url: str) -> dict[str, tuple[int, ManagedProcess]]:
    ports = {job: free_port() for job in JOBS if job not in {"prometheus", "redis"}}
    ports["redis"] = free_port()
    address = {job: f"{LOOPBACK}:{port}" for job, port in ports.items()}
    argv = {
        "node": ["prometheus-node-exporter", f"--web.listen-address={address['node']}"],
        "redis": ["prometheus-redis-exporter", f"-web.listen-address={address['redis']}", f"-redis.addr={redis_url}"],
        "alertmanager": [
            "prometheus-alertmanager",
            f"--web.listen-address={address['alertmanager']}",
            f"--storage.path={directory / 'alertmanager'}",
            "--cluster.listen-address=",
            "--config.file=/etc/prometheus/alertmanager.yml",
        ],
        "blackbox": [
            "prometheus-blackbox-exporter",
            f"--web.listen-address={address['blackbox']}",
            "--config.file=/etc/prometheus/blackbox.yml",
        ],
        "pushgateway": ["prometheus-pushgateway", f"--web.listen-address={address['pushgateway']}"],
    }
    return {
        job: (ports[job], ManagedProcess(job, [system_binary(args[0]), *args[1:]], directory / job))
        for job, args in argv.items()
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        redis_server = RedisServer(directory / "redis").start()
        started: list[ManagedProcess] = []
        try:
            targets = exporters(directory, f"redis://{LOOPBACK}:{redis_server.port}")
            for job, (port, process) in targets.items():
                process.start()
                started.append(process)
                wait_until(
                    lambda port=port: http_get(f"http://{LOOPBACK}:{port}/metrics")[0] == 200, job, process=process
                )
            prometheus_port = free_port()
            scrape = {job: port for job, (port, _) in targets.items()} | {"prometheus": prometheus_port}
            prometheus = prometheus_process(
                directory,
                prometheus_port,
                [{"job_name": job, "static_configs": [{"targets": [f"{LOOPBACK}:{scrape[job]}"]}]} for job in JOBS],
            )
            prometheus.start()
            started.append(prometheus)
            url = f"http://{LOOPBACK}:{prometheus_port}"
            wait_until(lambda: http_get(f"{url}/-/ready")[0] == 200, "Prometheus", process=prometheus)
            time.sleep(SCRAPES)  # a fixed number of scrapes: counters and histograms that appear late are included
            query = urllib.parse.urlencode({"match[]": '{job=~".+"}'})
            status, body = http_get(f"{url}/api/v1/series?{query}", timeout=30)
            if status != 200:
                print(f"make_demo_series: /api/v1/series answered HTTP {status}", file=sys.stderr)
                return 1
            series = [anonymized(labels) for labels in json.loads(body)["data"]]
        finally:
            for process in reversed(started):
                process.stop()
            redis_server.stop()
    series.sort(key=lambda labels: sorted(labels.items()))
    payload = json.dumps({"status": "success", "data": series}, separators=(",", ":"), sort_keys=True)
    OUTPUT.write_bytes(gzip.compress(payload.encode(), mtime=0))
    jobs = {job: sum(labels["job"] == job for labels in series) for job in JOBS}
    print(f"make_demo_series: {len(series)} series {jobs} -> {OUTPUT} ({OUTPUT.stat().st_size:,} bytes)")
    return 0


def anonymized(labels: dict[str, str]) -> dict[str, str]:
    """Instance as in the metadata snapshot (`<job>:9100`), and the host's name replaced."""
    labels = {**labels, "instance": f"{labels['job']}:9100"}
    for name in HOST_LABELS:
        if name in labels:
            labels[name] = "demo-host"
    return labels


if __name__ == "__main__":
    sys.exit(main())
