"""Single writer per store: cross-process locks held by every writer, whoever started it (CLI, API, Dagster step).

- `StoreLock` is an flock(2) on a file inside the store it guards (the embedded Chroma directory, the Parquet
  catalog): writers hold it exclusively, readers shared. The kernel drops it when its process dies, so a crash
  never leaves a store locked. An exclusive holder writes who it is, with a fresh token, into the file: a waiter
  can say whom it waits for, and a reader can tell the store changed since it last looked (`generation`).
- `namespace_writer` is a lease in Redis, `metrics-index:{namespace}:writer`, held by whatever writes a
  namespace's stores (name set, catalog, index), renewed in the background while held. Redis is shared by every
  writer of a deployment, on any host and with a Chroma server too; a crashed holder's lease expires by itself.

Both wait a bounded time (`wait_seconds`, METRICS_INDEX_LOCK_WAIT_SECONDS), tell `notify` once whom they wait
for, and then raise `StoreBusyError`; a wait of 0 fails at once. Both are re-entrant within a thread, so the API
takes the namespace lease around a whole run and the steps inside that run take it again without waiting.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import redis
from redis.exceptions import LockError

from metrics_index.stores.name_set import KEY_PREFIX

DEFAULT_WAIT_SECONDS = 600.0
LEASE_SECONDS = 30.0
_POLL_SECONDS = 0.05
_HOLDER = re.compile(r"pid (\d+) on (\S+) since ")
_DELETE_IF_UNCHANGED = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

log = logging.getLogger(__name__)
Notify = Callable[[str], None]


class StoreBusyError(RuntimeError):
    """Another writer kept the store for longer than this one was willing to wait."""


def holder() -> str:
    """Who holds a lock, for the message of whoever waits for it."""
    command = " ".join(os.path.basename(arg) if i == 0 else arg for i, arg in enumerate(sys.argv))[:80]
    return f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')} ({command})"


_THREAD_STATE = threading.local()


def _held() -> dict[str, list]:
    """The locks this thread holds: key -> [mode, depth]."""
    return _THREAD_STATE.__dict__.setdefault("held", {})


@contextmanager
def _reentrant(key: str, mode: int) -> Iterator[bool]:
    """Yields True when this thread already holds `key` (then nothing is to be taken), False otherwise."""
    held = _held().get(key)
    if held is None:
        yield False
        return
    if mode == fcntl.LOCK_EX and held[0] == fcntl.LOCK_SH:
        raise RuntimeError(f"{key} is held for reading by this thread and cannot be taken for writing")
    held[1] += 1
    try:
        yield True
    finally:
        held[1] -= 1


def _wait(
    try_take: Callable[[], bool], wait_seconds: float, waiting_for: Callable[[], str], notify: Notify | None
) -> None:
    deadline = time.monotonic() + wait_seconds
    told = False
    while not try_take():
        if time.monotonic() >= deadline:
            raise StoreBusyError(
                f"{waiting_for()}; gave up after {wait_seconds:g} s "
                "(set METRICS_INDEX_LOCK_WAIT_SECONDS to wait longer)"
            )
        if not told:
            (notify or log.info)(f"{waiting_for()}; waiting up to {wait_seconds:g} s")  # failing is the warning
            told = True
        time.sleep(_POLL_SECONDS)


class StoreLock:
    """An flock on `path`: `exclusive()` for writers, `shared()` for readers."""

    def __init__(self, path: Path, what: str, wait_seconds: float = DEFAULT_WAIT_SECONDS) -> None:
        self.path = path
        self.what = what
        self.wait_seconds = wait_seconds

    def exclusive(self, notify: Notify | None = None) -> AbstractContextManager[str]:
        """Hold the lock alone; yields the generation found on taking it (before this writer's own)."""
        return self._hold(fcntl.LOCK_EX, notify, self.wait_seconds)

    def shared(self, notify: Notify | None = None, wait_seconds: float | None = None) -> AbstractContextManager[str]:
        """Hold the lock with other readers; yields the generation, which no writer can change meanwhile."""
        return self._hold(fcntl.LOCK_SH, notify, self.wait_seconds if wait_seconds is None else wait_seconds)

    def generation(self) -> str:
        """Changes each time a writer takes the lock: the last writer's line and token ('' before any)."""
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return ""

    @contextmanager
    def _hold(self, mode: int, notify: Notify | None, wait_seconds: float) -> Iterator[str]:
        key = f"file:{self.path}"
        with _reentrant(key, mode) as already:
            if already:
                yield self.generation()
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _wait(lambda: _try_flock(fd, mode), wait_seconds, self._waiting_for, notify)
                seen = self.generation()
                if mode == fcntl.LOCK_EX:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{holder()} {uuid.uuid4().hex}\n".encode(), 0)
                _held()[key] = [mode, 1]
                try:
                    yield seen
                finally:
                    del _held()[key]
            finally:
                os.close(fd)  # drops the flock

    def _waiting_for(self) -> str:
        last = self.generation().rsplit(" ", 1)[0].strip()
        return f"{self.what} is in use by another process" + (f" (last writer: {last})" if last else "")


@contextmanager
def flocked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (created if need be), waited for, released when the block ends: for a short step
    one process at a time may take (starting the embedded Redis, creating a new Chroma store's tables)."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _try_flock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def writer_key(namespace: str) -> str:
    return f"{KEY_PREFIX}:{namespace}:writer"


@contextmanager
def namespace_writer(
    client: redis.Redis,
    namespace: str,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    notify: Notify | None = None,
    lease_seconds: float = LEASE_SECONDS,
) -> Iterator[None]:
    """Hold the namespace's writer lease for the duration of the block (renewed every third of the lease)."""
    key = writer_key(namespace)
    with _reentrant(f"redis:{key}", fcntl.LOCK_EX) as already:
        if already:
            yield
            return
        lease = client.lock(key, timeout=lease_seconds, thread_local=False)
        token = f"{holder()} {uuid.uuid4().hex}"

        def waiting_for() -> str:
            current = client.get(key)
            who = current.decode(errors="replace").rsplit(" ", 1)[0] if isinstance(current, bytes) else current
            return f"another run is writing namespace {namespace}" + (f" ({who})" if who else "")

        def take() -> bool:
            if lease.acquire(blocking=False, token=token):
                return True
            return _release_if_holder_died(client, key, namespace) and lease.acquire(blocking=False, token=token)

        _wait(take, wait_seconds, waiting_for, notify)
        stop = threading.Event()
        renewer = threading.Thread(
            target=_renew, args=(lease, namespace, lease_seconds / 3, stop), name=f"lease {key}", daemon=True
        )
        renewer.start()
        _held()[f"redis:{key}"] = [fcntl.LOCK_EX, 1]
        try:
            yield
        finally:
            del _held()[f"redis:{key}"]
            stop.set()
            renewer.join()
            try:
                lease.release()
            except (LockError, redis.RedisError) as error:
                log.warning("the writer lease of %s could not be released (it expires by itself): %s", namespace, error)


def _release_if_holder_died(client: redis.Redis, key: str, namespace: str) -> bool:
    """Delete a lease held by a process of this host that no longer exists (killed with -9, say), so the next run
    starts at once rather than after the lease expires; True when it was deleted. A holder on another host, or one
    whose pid is alive, is left alone."""
    current = client.get(key)
    match = _HOLDER.match(current.decode(errors="replace")) if isinstance(current, bytes) else None
    if match is None or match.group(2) != socket.gethostname() or _alive(int(match.group(1))):
        return False
    if not client.eval(_DELETE_IF_UNCHANGED, 1, key, current):
        return False
    log.warning(
        "the writer lease of %s belonged to pid %s of this host, which is gone: taken over", namespace, match[1]
    )
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _renew(lease: redis.lock.Lock, namespace: str, every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        try:
            lease.reacquire()
        except (LockError, redis.RedisError) as error:
            log.warning("could not renew the writer lease of %s: %s", namespace, error)
