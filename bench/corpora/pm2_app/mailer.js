// A one-shot job that sends the daily report and exits; PM2 does not restart it (it stays stopped).
setTimeout(() => process.exit(0), 2000);
