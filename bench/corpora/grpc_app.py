"""make.sh's `grpc` service: a user's own gRPC services in Python (grpcio) instrumented with py-grpc-prometheus.

`python -m grpc_app serve METRICS_PORT CATALOG_PORT PRICING_PORT INVENTORY_PORT` runs two gRPC servers in one
process on 127.0.0.1: shop.Catalog (unary GetItem and Checkout, server-streaming ListItems, client-streaming
ImportItems, bidirectional-streaming Chat) and shop.Pricing (unary GetPrice), both with the server interceptor (the
handling-time histogram on); Catalog calls Pricing, and Inventory on a port nobody listens on, through a channel with
the client interceptor (every histogram on). The process's metrics (prometheus_client's default registry) are served
on METRICS_PORT. `python -m grpc_app traffic CATALOG_PORT` is a plain client (no metrics): OK, failing, slow and
cancelled calls of every kind. Messages are JSON, so no generated code is needed."""

import json
import sys
import time
from concurrent import futures

import grpc
from prometheus_client import start_http_server
from py_grpc_prometheus.prometheus_client_interceptor import PromClientInterceptor
from py_grpc_prometheus.prometheus_server_interceptor import PromServerInterceptor


def encode(message):
    return json.dumps(message).encode()


def decode(data):
    return json.loads(data)


ITEMS = {"apple": 3, "pear": 5, "plum": 0, "fig": 2}


def unary(function):
    return grpc.unary_unary_rpc_method_handler(function, decode, encode)


class Catalog:
    def __init__(self, pricing_port, inventory_port):
        interceptor = PromClientInterceptor(
            enable_client_handling_time_histogram=True,
            enable_client_stream_receive_time_histogram=True,
            enable_client_stream_send_time_histogram=True,
        )
        pricing = grpc.intercept_channel(grpc.insecure_channel(f"127.0.0.1:{pricing_port}"), interceptor)
        inventory = grpc.intercept_channel(grpc.insecure_channel(f"127.0.0.1:{inventory_port}"), interceptor)
        self.get_price = pricing.unary_unary("/shop.Pricing/GetPrice", encode, decode)
        self.quote_stream = pricing.stream_stream("/shop.Pricing/QuoteStream", encode, decode)
        self.reserve = inventory.unary_unary("/shop.Inventory/Reserve", encode, decode)

    def get_item(self, request, context):
        name = request.get("name", "")
        if not name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name is required")
        if name not in ITEMS:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no item {name}")
        try:
            price = self.get_price({"name": name}, timeout=2)
        except grpc.RpcError as error:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"pricing: {error.code().name}")
        return {"name": name, "stock": ITEMS[name], "price": price["price"]}

    def checkout(self, request, context):
        time.sleep(float(request.get("delay", 0)))
        if ITEMS.get(request.get("name"), 0) == 0:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "out of stock")
        if request.get("reserve"):
            try:
                self.reserve({"name": request["name"]}, timeout=1)
            except grpc.RpcError as error:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"inventory: {error.code().name}")
        if request.get("card") == "bad":
            raise RuntimeError("payment gateway crashed")
        return {"order": 1}

    def list_items(self, request, context):
        for name, stock in ITEMS.items():
            time.sleep(0.05)
            yield {"name": name, "stock": stock}

    def import_items(self, requests, context):
        count = 0
        for item in requests:
            if item.get("stock", 0) < 0:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "negative stock")
            count += 1
        return {"imported": count}

    def chat(self, requests, context):
        questions = list(requests)
        yield from self.quote_stream(iter({"name": q.get("name", "")} for q in questions), timeout=5)

    def handler(self):
        return grpc.method_handlers_generic_handler(
            "shop.Catalog",
            {
                "GetItem": unary(self.get_item),
                "Checkout": unary(self.checkout),
                "ListItems": grpc.unary_stream_rpc_method_handler(self.list_items, decode, encode),
                "ImportItems": grpc.stream_unary_rpc_method_handler(self.import_items, decode, encode),
                "Chat": grpc.stream_stream_rpc_method_handler(self.chat, decode, encode),
            },
        )


def get_price(request, context):
    if request["name"] == "fig":
        time.sleep(0.4)
    return {"price": 1.5}


def quote_stream(requests, context):
    for request in requests:
        yield {"name": request["name"], "price": 1.5}


def pricing_handler():
    return grpc.method_handlers_generic_handler(
        "shop.Pricing",
        {
            "GetPrice": unary(get_price),
            "QuoteStream": grpc.stream_stream_rpc_method_handler(quote_stream, decode, encode),
        },
    )


def server(port, handler, interceptor):
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), interceptors=(interceptor,))
    grpc_server.add_generic_rpc_handlers((handler,))
    grpc_server.add_insecure_port(f"127.0.0.1:{port}")
    grpc_server.start()
    return grpc_server


def serve(metrics_port, catalog_port, pricing_port, inventory_port):
    start_http_server(int(metrics_port), addr="127.0.0.1")
    # One interceptor for both servers: its metrics are registered once, in the default registry.
    interceptor = PromServerInterceptor(enable_handling_time_histogram=True)
    servers = [
        server(pricing_port, pricing_handler(), interceptor),
        server(catalog_port, Catalog(pricing_port, inventory_port).handler(), interceptor),
    ]
    servers[-1].wait_for_termination()


def call(function, *args, **kwargs):
    try:
        answer = function(*args, **kwargs)
        return list(answer) if hasattr(answer, "__iter__") and not isinstance(answer, dict) else answer
    except grpc.RpcError as error:
        print(function._method.decode(), error.code().name)
        return None


def traffic(catalog_port):
    channel = grpc.insecure_channel(f"127.0.0.1:{catalog_port}")
    get_item = channel.unary_unary("/shop.Catalog/GetItem", encode, decode)
    checkout = channel.unary_unary("/shop.Catalog/Checkout", encode, decode)
    list_items = channel.unary_stream("/shop.Catalog/ListItems", encode, decode)
    import_items = channel.stream_unary("/shop.Catalog/ImportItems", encode, decode)
    chat = channel.stream_stream("/shop.Catalog/Chat", encode, decode)
    refund = channel.unary_unary("/shop.Catalog/Refund", encode, decode)
    for _ in range(5):
        for name in ("apple", "pear", "fig"):
            call(get_item, {"name": name}, timeout=5)
    call(get_item, {"name": "kiwi"}, timeout=5)
    call(get_item, {}, timeout=5)
    call(checkout, {"name": "apple"}, timeout=5)
    call(checkout, {"name": "pear", "delay": 1.2}, timeout=5)
    call(checkout, {"name": "plum"}, timeout=5)
    call(checkout, {"name": "apple", "card": "bad"}, timeout=5)
    call(checkout, {"name": "apple", "reserve": True}, timeout=5)
    call(checkout, {"name": "pear", "delay": 2}, timeout=0.5)
    for _ in range(3):
        call(list_items, {}, timeout=5)
    call(import_items, iter([{"name": "kiwi", "stock": 4}, {"name": "lime", "stock": 1}]), timeout=5)
    call(import_items, iter([{"name": "kiwi", "stock": -1}]), timeout=5)
    call(chat, iter([{"name": "apple"}, {"name": "pear"}]), timeout=5)
    call(refund, {"order": 1}, timeout=5)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(*sys.argv[2:6])
    else:
        traffic(sys.argv[2])
