// A third-party SQS client for tests and `make dev`: sends COUNT log lines
// to a queue with the AWS SDK for JavaScript (installed with fauxqs), ten
// per SendMessageBatch. Usage: node sqs-send.mjs ENDPOINT QUEUE_URL COUNT [FIRST]
import { SQSClient, SendMessageBatchCommand } from "@aws-sdk/client-sqs";

const [endpoint, queueUrl, countArg, firstArg] = process.argv.slice(2);
const count = Number(countArg);
const first = Number(firstArg ?? 0);
const client = new SQSClient({
  endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "connect-dev", secretAccessKey: "connect-dev-secret" },
});
for (let i = first; i < first + count; i += 10) {
  const entries = [];
  for (let j = i; j < Math.min(i + 10, first + count); j++) {
    entries.push({
      Id: String(j),
      MessageBody: `10.1.0.${j % 250} - - [27/Nov/2026:10:00:00 +0000] "GET /js${j % 5} HTTP/1.1" 200 ${j} "-" "aws-sdk-js"`,
    });
  }
  const out = await client.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries }));
  if (out.Failed && out.Failed.length > 0) {
    console.error("failed:", JSON.stringify(out.Failed));
    process.exit(1);
  }
}
console.log(`sent ${count} messages`);
