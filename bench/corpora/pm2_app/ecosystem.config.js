// make.sh's pm2 service: the shop's API in cluster mode (two instances, on CORPUS_API_PORT), a worker that crashes
// and is restarted with an exponential back-off, a one-shot mailer that is not restarted, and pm2-metrics run as an
// app of its own as its README says (its host and port set with `pm2 set pm2-metrics:...`).
module.exports = {
  apps: [
    { name: "api", script: "api.js", exec_mode: "cluster", instances: 2, env: { PORT: process.env.CORPUS_API_PORT } },
    { name: "worker", script: "worker.js", exp_backoff_restart_delay: 100 },
    { name: "mailer", script: "mailer.js", autorestart: false },
    { name: "pm2-metrics", script: "node_modules/pm2-metrics/exporter.js" },
  ],
};
