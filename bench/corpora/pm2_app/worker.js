// A queue worker that crashes after a few seconds (an unhandled error), so that PM2 restarts it, with its
// exponential back-off.
let done = 0;
setInterval(() => {
  done += 1;
}, 200);
setTimeout(() => {
  throw new Error(`lost the connection to the queue after ${done} jobs`);
}, 4000);
