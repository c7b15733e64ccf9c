"""The jobs of make.sh's `rq` service: a few kinds (quick, slow, failing, retried) that the RQ workers run, and
the client that enqueues them on three queues (high, default, low), with the Redis URL from the environment
(CORPUS_REDIS_URL)."""

import os
import sys
import time
from datetime import timedelta

from redis import Redis
from rq import Queue, Retry


def add(x, y):
    return x + y


def resize_image(seconds):
    time.sleep(seconds)
    return "resized"


def charge_card(amount):
    if amount < 0:
        raise ValueError("negative amount")
    return amount


def send_email(address):
    # The mail server "times out" for every address at example.net, also on the retry.
    if address.endswith("@example.net"):
        raise ConnectionError("mail server timed out")
    return address


def enqueue(seconds):
    """Quick jobs, card charges of which some fail, e-mails of which one fails twice (retried once), a job that
    waits for another (deferred), jobs scheduled for later, and slow image resizes on the low queue, so that jobs
    are running and waiting while Prometheus scrapes."""
    redis = Redis.from_url(os.environ["CORPUS_REDIS_URL"])
    high, default, low = (Queue(name, connection=redis) for name in ("high", "default", "low"))
    for i in range(20):
        default.enqueue(add, i, i)
    for amount in (5, 10, -1, 20, -2, 30):
        high.enqueue(charge_card, amount)
    for address in ("ann@example.org", "bob@example.org", "eve@example.net"):
        default.enqueue(send_email, address, retry=Retry(max=1))
    slow = [low.enqueue(resize_image, seconds / 4, job_timeout=600) for _ in range(6)]
    low.enqueue(add, 1, 1, depends_on=slow[-1])
    default.enqueue_in(timedelta(hours=1), add, 2, 2)
    high.enqueue_in(timedelta(hours=2), charge_card, 40)


if __name__ == "__main__":
    # The jobs name their functions by module: rq_app's, not __main__'s, so that the workers find them.
    import rq_app

    rq_app.enqueue(float(sys.argv[1]))
