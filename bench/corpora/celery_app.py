"""The Celery application of make.sh's `celery` service: a few kinds of tasks (quick, slow, failing, retrying)
on two queues, the Redis broker and result backend from the environment (CORPUS_REDIS_URL), task events on so
that celery-exporter sees them."""

import os
import time

from celery import Celery

app = Celery("shop", broker=os.environ["CORPUS_REDIS_URL"], backend=os.environ["CORPUS_REDIS_URL"])
app.conf.update(
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_default_queue="default",
    task_routes={"shop.resize_image": {"queue": "images"}},
    broker_connection_retry_on_startup=True,
)


@app.task(name="shop.add")
def add(x, y):
    return x + y


@app.task(name="shop.resize_image")
def resize_image(seconds):
    time.sleep(seconds)
    return "resized"


@app.task(name="shop.charge_card")
def charge_card(amount):
    if amount < 0:
        raise ValueError("negative amount")
    return amount


@app.task(name="shop.send_email", bind=True, max_retries=2, default_retry_delay=1)
def send_email(self, address):
    # The mail server "times out" on the first try of every message, so every task is retried once.
    if self.request.retries == 0:
        raise self.retry(exc=ConnectionError("mail server timed out"))
    return address
