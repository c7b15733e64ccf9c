"""The FastAPI service of make.sh's `fastapi` service: users and orders read, added and deleted, a slow report and
a failing one, instrumented with prometheus-fastapi-instrumentator as its README says (its default metrics and the
requests in progress), served on /metrics. Only the library's own metrics."""

import asyncio

from fastapi import FastAPI, HTTPException, Response
from prometheus_fastapi_instrumentator import Instrumentator
from pydantic import BaseModel

app = FastAPI(title="shop")
Instrumentator(should_instrument_requests_inprogress=True, inprogress_labels=True).instrument(app).expose(app)


class Order(BaseModel):
    item: str
    quantity: int = 1


orders = {1: {"id": 1, "item": "pear", "quantity": 2}}


@app.get("/api/users/{user_id}")
async def read_user(user_id: int):
    return {"id": user_id, "name": f"user {user_id}"}


@app.get("/api/orders")
async def list_orders():
    return list(orders.values())


@app.get("/api/orders/{order_id}")
async def read_order(order_id: int):
    if order_id not in orders:
        raise HTTPException(status_code=404, detail="no such order")
    return orders[order_id]


@app.post("/api/orders", status_code=201)
async def add_order(order: Order):
    order_id = max(orders, default=0) + 1
    orders[order_id] = {"id": order_id, **order.model_dump()}
    return orders[order_id]


@app.delete("/api/orders/{order_id}", status_code=204)
async def delete_order(order_id: int):
    if orders.pop(order_id, None) is None:
        raise HTTPException(status_code=404, detail="no such order")
    return Response(status_code=204)


# A slow report (about a second and a half) and one that fails.
@app.get("/api/report")
async def report():
    await asyncio.sleep(1.5)
    return {"orders": len(orders)}


@app.get("/api/broken")
async def broken():
    raise RuntimeError("the report store is unreachable")
