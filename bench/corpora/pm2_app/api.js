// The shop's API, run by PM2 in cluster mode: orders listed, a slow report and a route that fails.
const http = require("http");

const port = Number(process.env.PORT);
const orders = [{ id: 1, item: "apple" }, { id: 2, item: "pear" }];

http
  .createServer((request, response) => {
    if (request.url === "/orders") {
      response.setHeader("Content-Type", "application/json");
      response.end(JSON.stringify(orders));
    } else if (request.url === "/report") {
      setTimeout(() => response.end("report"), 1000);
    } else if (request.url === "/fail") {
      response.statusCode = 500;
      response.end("failed");
    } else {
      response.statusCode = 404;
      response.end("not found");
    }
  })
  .listen(port, "127.0.0.1");
