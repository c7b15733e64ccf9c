// A small Express service instrumented the usual way: express-prom-bundle's HTTP histogram (method, path, status
// code) and prom-client's default metrics, both served on /metrics. Only the libraries' own metrics.
"use strict";
const express = require("express");
const promBundle = require("express-prom-bundle");

const port = Number(process.argv[2] || 3000);
const app = express();
app.use(
  promBundle({
    includeMethod: true,
    includePath: true,
    includeStatusCode: true,
    promClient: { collectDefaultMetrics: {} },
  }),
);
app.use(express.json());

const orders = new Map([[1, { id: 1, item: "pear", quantity: 2 }]]);
let nextId = 2;

app.get("/api/users/:id", (req, res) => res.json({ id: req.params.id, name: `user ${req.params.id}` }));
app.get("/api/orders", (req, res) => res.json([...orders.values()]));
app.get("/api/orders/:id", (req, res) => {
  const order = orders.get(Number(req.params.id));
  if (!order) return res.status(404).json({ error: "no such order" });
  res.json(order);
});
app.post("/api/orders", (req, res) => {
  if (!req.body || !req.body.item) return res.status(400).json({ error: "item missing" });
  const order = { id: nextId++, item: req.body.item, quantity: req.body.quantity || 1 };
  orders.set(order.id, order);
  res.status(201).json(order);
});
app.delete("/api/orders/:id", (req, res) => res.status(orders.delete(Number(req.params.id)) ? 204 : 404).end());
// A slow report (about a second and a half) and one that fails.
app.get("/api/report", (req, res) => setTimeout(() => res.json({ orders: orders.size }), 1500));
app.get("/api/broken", () => {
  throw new Error("the report store is unreachable");
});

app.listen(port, "127.0.0.1", () => console.log(`listening on 127.0.0.1:${port}`));
