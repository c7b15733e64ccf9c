// A user's own Moleculer microservices (search corpus): run as `node app.js gateway REDIS_PORT METRICS_PORT API_PORT`
// (the API gateway, moleculer-web) or `node app.js worker REDIS_PORT METRICS_PORT` (the services orders, payments,
// inventory and notifications). The two nodes talk over a Redis transporter; each serves Moleculer's own metrics with
// its Prometheus reporter on 127.0.0.1. Caching, retries, a circuit breaker, a bulkhead and request timeouts are on,
// so that their metrics move.
"use strict";
const { ServiceBroker, Errors } = require("moleculer");
const ApiGateway = require("moleculer-web");

const [role, redisPort, metricsPort, apiPort] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const broker = new ServiceBroker({
  nodeID: role,
  namespace: "shop",
  transporter: `redis://127.0.0.1:${redisPort}`,
  cacher: "Memory",
  requestTimeout: 3000,
  retryPolicy: { enabled: true, retries: 2, delay: 100, maxDelay: 500, factor: 2, check: (err) => err && !!err.retryable },
  circuitBreaker: { enabled: true, threshold: 0.5, minRequestCount: 5, windowTime: 60, halfOpenTime: 10000 },
  bulkhead: { enabled: true, concurrency: 2, maxQueueSize: 5 },
  metrics: {
    enabled: true,
    reporter: { type: "Prometheus", options: { host: "127.0.0.1", port: Number(metricsPort), path: "/metrics" } },
  },
  logLevel: "info",
});

if (role === "gateway") {
  broker.createService({
    name: "api",
    mixins: [ApiGateway],
    settings: {
      ip: "127.0.0.1",
      port: Number(apiPort),
      routes: [
        {
          path: "/api",
          aliases: {
            "GET orders": "orders.list",
            "GET orders/:id": "orders.get",
            "POST orders": "orders.create",
            "GET stock/:item": "inventory.stock",
            "POST pay": "payments.charge",
            "GET report": "orders.report",
          },
          bodyParsers: { json: true },
        },
      ],
    },
  });
} else {
  const orders = new Map([[1, { id: 1, item: "pear", quantity: 2 }]]);
  let nextId = 2;
  let flaky = 0;
  broker.createService({
    name: "orders",
    actions: {
      list: { cache: true, handler: () => [...orders.values()] },
      get: {
        params: { id: { type: "number", convert: true } },
        handler(ctx) {
          const order = orders.get(ctx.params.id);
          if (!order) throw new Errors.MoleculerClientError("no such order", 404, "NOT_FOUND");
          return order;
        },
      },
      // An order without an item fails validation (422); a new order is announced as an event.
      create: {
        params: { item: "string", quantity: { type: "number", optional: true } },
        async handler(ctx) {
          const order = { id: nextId++, item: ctx.params.item, quantity: ctx.params.quantity || 1 };
          orders.set(order.id, order);
          await ctx.call("inventory.reserve", { item: order.item, quantity: order.quantity });
          ctx.emit("order.created", order);
          return order;
        },
      },
      // A report slower than the request timeout (3 s): a RequestTimeoutError.
      report: {
        async handler() {
          await sleep(4000);
          return { orders: orders.size };
        },
      },
    },
  });
  broker.createService({
    name: "payments",
    actions: {
      // The first, fifth, ninth, ... charge fail once with a retryable error (the caller retries them); a declined
      // card fails for good (402).
      charge: {
        async handler(ctx) {
          await sleep(150);
          flaky += 1;
          if (flaky % 4 === 1 && !ctx.meta.retried) {
            ctx.meta.retried = true;
            throw new Errors.MoleculerRetryableError("payment provider busy", 503, "BUSY");
          }
          if (ctx.params.card === "declined") throw new Errors.MoleculerClientError("card declined", 402, "DECLINED");
          return { charged: ctx.params.amount };
        },
      },
    },
  });
  broker.createService({
    name: "inventory",
    actions: {
      stock: { cache: { keys: ["item"] }, params: { item: "string" }, handler: (ctx) => ({ item: ctx.params.item, left: 7 }) },
      reserve: {
        async handler() {
          await sleep(200);
          return true;
        },
      },
    },
  });
  broker.createService({
    name: "notifications",
    events: {
      // The confirmation of an order of a "bomb" fails (an error in an event handler).
      async "order.created"(ctx) {
        await sleep(50);
        if (ctx.params.item === "bomb") throw new Error("template missing");
      },
    },
  });
}

broker.start().catch((err) => {
  console.error(err);
  process.exit(1);
});
