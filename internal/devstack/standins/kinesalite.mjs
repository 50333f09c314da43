// Starts kinesalite (the Kinesis stand-in, npm) on 127.0.0.1 only, in
// memory, with streams active at once (no CREATING/UPDATING delay) and room
// for 100 shards. Usage: node kinesalite.mjs PORT. Prints "kinesalite
// listening on 127.0.0.1:PORT" when ready. Its gaps (DESIGN.md §4):
// GetRecords returns no ChildShards, ListShards ignores ShardFilter and
// paging, no enhanced fan-out.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const kinesalite = require("kinesalite");

const port = Number(process.argv[2] ?? 0);
const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100 });
server.listen(port, "127.0.0.1", () => {
  console.log(`kinesalite listening on 127.0.0.1:${server.address().port}`);
});
const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
