// The repository's built Node client (clients/node/dist): streams of MODEL (which fails after
// it began) carrying each REQUEST_ID, read to their end; what each error says, one JSON line.
//
//   node tests/e2e/node/stream_midway.js ADDRESS MODEL REQUEST_ID...
const { Client, grpc } = require("../../../clients/node/dist/index.js");

const [address, model, ...ids] = process.argv.slice(2);
const client = new Client(address, { timeoutMs: 30_000 });

async function main() {
  for (const id of ids) {
    const metadata = new grpc.Metadata();
    metadata.set("x-request-id", id);
    try {
      for await (const _ of client.stream("generateStream", { model, query: "q" }, { metadata }));
      console.log(JSON.stringify({ error: null }));
    } catch (error) {
      const { codeName: code, retryAfterMs, requestId } = error;
      console.log(JSON.stringify({ code, retryAfterMs: retryAfterMs ?? null, requestId }));
    }
  }
}

main().finally(() => client.close());
