// A user's own BullMQ service on Redis: a producer and workers of three queues (emails retried once with back-off,
// card payments of which some fail, slow image resizes), a paused queue of reports and a flow whose parent waits for
// its children. Metrics as BullMQ documents them: each queue's own Prometheus export (Queue.exportPrometheusMetrics)
// with prom-client's default metrics on this service's /metrics, and BullMQ's OpenTelemetry metrics (bullmq-otel,
// enableMetrics) on OpenTelemetry's Prometheus exporter. POST /traffic sends a round of jobs.
"use strict";
const http = require("node:http");
const { metrics } = require("@opentelemetry/api");
const { MeterProvider } = require("@opentelemetry/sdk-metrics");
const { PrometheusExporter } = require("@opentelemetry/exporter-prometheus");

const [redisPort, port, otelPort] = process.argv.slice(2).map(Number);

// The OpenTelemetry meter provider must be global before bullmq-otel asks it for a meter.
const exporter = new PrometheusExporter({ host: "127.0.0.1", port: otelPort });
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [exporter] }));

const { Queue, Worker, FlowProducer, MetricsTime } = require("bullmq");
const { BullMQOtel } = require("bullmq-otel");
const client = require("prom-client");

client.collectDefaultMetrics();
const telemetry = new BullMQOtel({ tracerName: "corpus-shop", enableMetrics: true });
const connection = { host: "127.0.0.1", port: redisPort, maxRetriesPerRequest: null };
// Completed and failed jobs per minute kept for a week: what bullmq_job_completed_total and _failed_total read.
const workerOpts = { connection, telemetry, metrics: { maxDataPoints: MetricsTime.ONE_WEEK } };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const queues = {};
for (const name of ["emails", "payments", "images", "reports"]) {
  queues[name] = new Queue(name, { connection, telemetry });
}

const workers = [
  // An e-mail to a bounce address fails its first attempt and succeeds on the retry (attempts: 2); one to an invalid
  // address fails both.
  new Worker(
    "emails",
    async (job) => {
      await sleep(50);
      if (job.data.to.startsWith("bounce") && job.attemptsMade === 0) throw new Error("mailbox unavailable");
      if (!job.data.to.includes("@")) throw new Error("invalid address");
      return { sent: true };
    },
    { ...workerOpts, concurrency: 4 },
  ),
  // A declined card fails for good.
  new Worker(
    "payments",
    async (job) => {
      await sleep(100);
      if (job.data.card === "declined") throw new Error("card declined");
      return { charged: job.data.amount };
    },
    { ...workerOpts, concurrency: 2 },
  ),
  // Image resizes take seconds, one at a time, so some are active and some wait while Prometheus scrapes.
  new Worker(
    "images",
    async (job) => {
      await sleep(job.name === "thumbnail" ? 2000 : 4000);
      return { resized: job.data.file };
    },
    { ...workerOpts, concurrency: 1 },
  ),
];
for (const worker of workers) worker.on("error", (err) => console.error(worker.name, err.message));
const flows = new FlowProducer({ connection, telemetry });

let round = 0;
async function traffic() {
  round += 1;
  const r = round;
  for (let i = 0; i < 8; i++) await queues.emails.add("welcome", { to: `user${i}@example.org` });
  // Bounces: one retried after a back-off (delayed meanwhile), one retried at once.
  await queues.emails.add("welcome", { to: `bounce${r}@example.org` }, { attempts: 2, backoff: { type: "fixed", delay: 500 } });
  await queues.emails.add("reminder", { to: `bounce-again${r}@example.org` }, { attempts: 2 });
  await queues.emails.add("reminder", { to: `nobody-${r}` }, { attempts: 2 });
  for (let i = 0; i < 6; i++) {
    await queues.payments.add("charge", { card: i % 3 === 2 ? "declined" : "visa", amount: 10 + i });
  }
  for (let i = 0; i < 4; i++) await queues.images.add(i % 2 ? "thumbnail" : "resize", { file: `photo-${r}-${i}.jpg` });
  // A newsletter scheduled hours ahead stays delayed; a high-priority resize is prioritized behind the running one.
  await queues.emails.add("newsletter", { to: "everyone@example.org" }, { delay: 6 * 3600 * 1000 });
  await queues.images.add("resize", { file: `urgent-${r}.jpg` }, { priority: 1 });
  // Reports wait in a paused queue.
  await queues.reports.pause();
  await queues.reports.add("monthly", { month: `2026-${r}` });
  // A flow: an order's confirmation (the parent, on emails) waits for its images' resizes (the children).
  await flows.add({
    name: "order-confirmation",
    queueName: "emails",
    data: { to: `buyer${r}@example.org` },
    children: [1, 2].map((i) => ({ name: "resize", queueName: "images", data: { file: `order-${r}-${i}.jpg` } })),
  });
  return r;
}

// The job counts by state as OpenTelemetry gauges (bullmq.queue.jobs), refreshed every two seconds.
setInterval(() => {
  for (const queue of Object.values(queues)) queue.recordJobCountsMetric().catch(() => {});
}, 2000);

const server = http.createServer(async (req, res) => {
  try {
    if (req.method === "POST" && req.url === "/traffic") {
      const r = await traffic();
      res.end(`round ${r}\n`);
      return;
    }
    if (req.url === "/metrics") {
      const parts = [await client.register.metrics()];
      for (const queue of Object.values(queues)) parts.push(await queue.exportPrometheusMetrics());
      res.setHeader("Content-Type", client.register.contentType);
      res.end(parts.join("\n") + "\n");
      return;
    }
    res.statusCode = 404;
    res.end();
  } catch (err) {
    res.statusCode = 500;
    res.end(String(err));
  }
});
server.listen(port, "127.0.0.1");
