"""The client of make.sh's `prefect` service: a user's own process that runs Prefect flows against the Prefect server
at PREFECT_API_URL and serves Prefect's client metrics (PREFECT_CLIENT_METRICS_PORT). For about sys.argv[1] seconds it
follows the server's event and log streams over websockets, runs flows (a report whose flaky task is retried, an
import that fails) and emits events of its own; then it keeps serving its metrics until it is stopped."""

import asyncio
import contextlib
import sys
import time

from prefect import flow, get_run_logger, task
from prefect.events import emit_event
from prefect.events.clients import get_events_subscriber
from prefect.logging.clients import get_logs_subscriber
from prefect.utilities.services import start_client_metrics_server

ATTEMPTS = {"fetch_orders": 0}


@task(retries=2, retry_delay_seconds=0)
def fetch_orders(count):
    ATTEMPTS["fetch_orders"] += 1
    if ATTEMPTS["fetch_orders"] % 2:
        raise RuntimeError("the orders database timed out")
    return list(range(count))


@task
def charge(order):
    return order * 2


@flow
def nightly_report(count: int = 3):
    logger = get_run_logger()
    orders = fetch_orders(count)
    logger.info("charging %d orders", len(orders))
    logger.warning("one order has no address")
    return [charge(order) for order in orders]


@flow
def import_customers():
    get_run_logger().error("the customer file is malformed")
    raise ValueError("the customer file is malformed")


def run_flows():
    nightly_report()
    with contextlib.suppress(ValueError):
        import_customers()


async def follow(subscriber, seconds):
    deadline = time.monotonic() + seconds
    async with subscriber as stream:
        async for _ in stream:
            if time.monotonic() > deadline:
                break


async def main(seconds):
    followers = [
        asyncio.create_task(follow(get_events_subscriber(), seconds)),
        asyncio.create_task(follow(get_logs_subscriber(), seconds)),
    ]
    await asyncio.sleep(2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.to_thread(run_flows)
        for order in range(200):
            emit_event("shop.order.shipped", resource={"prefect.resource.id": f"shop.order.{order}"})
        await asyncio.sleep(2)
    await asyncio.wait(followers, timeout=10)


if __name__ == "__main__":
    start_client_metrics_server()
    asyncio.run(main(float(sys.argv[1])))
    while True:
        time.sleep(60)
