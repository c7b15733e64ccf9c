"""Processes that race, round after round, for the tests of what happens when they do a thing at the same moment.

Each worker is `python -c SCRIPT meeting worker workers rounds *args`; at every step it calls `meet`, which waits
until every worker has reached that step (files in the shared `meeting` folder), so the next call starts in all of
them together. A worker that fails writes its traceback there and the others stop.
"""

from __future__ import annotations

import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def worker_argv() -> tuple[Path, str, int, int, list[str]]:
    """In a worker: the meeting folder, this worker's name, how many workers, how many rounds, the other arguments."""
    meeting, worker, workers, rounds, *rest = sys.argv[1:]
    return Path(meeting), worker, int(workers), int(rounds), rest


def meet(meeting: Path, step: str, worker: str, workers: int) -> None:
    """Wait until every worker has reached `step` (exit 2 as soon as one has failed)."""
    (meeting / f"{step}-{worker}").touch()
    while len(list(meeting.glob(f"{step}-*"))) < workers:
        if list(meeting.glob("failed-*")):
            sys.exit(2)
        time.sleep(0.005)


@contextmanager
def failure_reported(meeting: Path, worker: str) -> Iterator[None]:
    """A worker's failure, written for the others (which then stop) and raised."""
    try:
        yield
    except BaseException:
        (meeting / f"failed-{worker}").write_text(traceback.format_exc())
        raise


def race(script: str, meeting: Path, workers: int, rounds: int, *args: str, timeout: float = 300) -> list[str]:
    """Run `script` in `workers` processes at once; assert they all succeeded; their standard errors."""
    meeting.mkdir(parents=True, exist_ok=True)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(meeting), str(worker), str(workers), str(rounds), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(workers)
    ]
    errors = [process.communicate(timeout=timeout)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * workers, "\n".join(errors)
    return errors
