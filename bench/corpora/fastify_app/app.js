// A small Fastify service instrumented the usual way: fastify-metrics (its route duration histogram and summary by
// method, route and status code, and prom-client's default metrics), served on /metrics. Only the plugin's metrics.
"use strict";
const fastify = require("fastify")({ logger: true });
const metricsPlugin = require("fastify-metrics");

const port = Number(process.argv[2] || 3000);

const orders = new Map([[1, { id: 1, item: "pear", quantity: 2 }]]);
let nextId = 2;

async function main() {
  await fastify.register(metricsPlugin, { endpoint: "/metrics" });

  fastify.get("/api/users/:id", async (req) => ({ id: req.params.id, name: `user ${req.params.id}` }));
  fastify.get("/api/orders", async () => [...orders.values()]);
  fastify.get("/api/orders/:id", async (req, reply) => {
    const order = orders.get(Number(req.params.id));
    if (!order) return reply.code(404).send({ error: "no such order" });
    return order;
  });
  // An order without an item fails the body schema (400).
  const orderSchema = {
    body: {
      type: "object",
      required: ["item"],
      properties: { item: { type: "string" }, quantity: { type: "integer" } },
    },
  };
  fastify.post("/api/orders", { schema: orderSchema }, async (req, reply) => {
    const order = { id: nextId++, item: req.body.item, quantity: req.body.quantity || 1 };
    orders.set(order.id, order);
    return reply.code(201).send(order);
  });
  fastify.delete("/api/orders/:id", async (req, reply) =>
    reply.code(orders.delete(Number(req.params.id)) ? 204 : 404).send(),
  );
  // A slow report (about a second and a half) and one that fails.
  fastify.get("/api/report", async () => {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    return { orders: orders.size };
  });
  fastify.get("/api/broken", async () => {
    throw new Error("the report store is unreachable");
  });

  await fastify.listen({ port, host: "127.0.0.1" });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
