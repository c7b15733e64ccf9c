"""The driver of make.sh's `ray` service: a job that runs a few kinds of tasks (quick, slow, failing and retried),
puts objects into the object store, and uses an actor (one more is killed), on the Ray cluster at sys.argv[1] for
about sys.argv[2] seconds."""

import contextlib
import sys
import time

import ray


@ray.remote
def square(x):
    return x * x


@ray.remote
def resize_image(seconds):
    time.sleep(seconds)
    return "resized"


@ray.remote(max_retries=0)
def charge_card(amount):
    if amount < 0:
        raise ValueError("negative amount")
    return amount


@ray.remote(max_retries=1, retry_exceptions=True)
def send_email(address):
    # The mail server "times out" on every try, so the task fails again on its one retry.
    raise ConnectionError(f"mail server timed out for {address}")


@ray.remote
def checksum(blob):
    return sum(blob[::4096])


@ray.remote
class Cart:
    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)
        return len(self.items)


def main(address, seconds):
    ray.init(address=address, namespace="shop", log_to_driver=False)
    ray.get([square.remote(i) for i in range(50)])
    for ref in [charge_card.remote(amount) for amount in (5, 10, -1, 20, -2, 30)]:
        with contextlib.suppress(ray.exceptions.RayTaskError):
            ray.get(ref)
    with contextlib.suppress(ray.exceptions.RayTaskError):
        ray.get(send_email.remote("ann@example.org"))
    # Objects in the object store: a few megabytes each, read by tasks.
    blobs = [ray.put(bytes(4 * 1024 * 1024)) for _ in range(5)]
    ray.get([checksum.remote(blob) for blob in blobs])
    cart = Cart.remote()
    ray.get([cart.add.remote(item) for item in ("pear", "plum", "fig")])
    doomed = Cart.remote()
    ray.get(doomed.add.remote("apple"))
    ray.kill(doomed)
    # Slow tasks still running (and more waiting for a CPU) while Prometheus scrapes.
    slow = [resize_image.remote(seconds / 4) for _ in range(6)]
    ray.get(slow)
    time.sleep(seconds / 4)
    ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
