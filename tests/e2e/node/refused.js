// The repository's built Node client (clients/node/dist) against a stack that asks for an API
// key: a call without one, which Envoy itself refuses (what the error carries: its message,
// request ID, status message as it arrived and details), and one with the key in its metadata. Prints
// one JSON line each.
//
//   node tests/e2e/node/refused.js ADDRESS MODEL KEY
const grpc = require("@grpc/grpc-js");
const { Client, SaxGatewayError } = require("../../../clients/node/dist/index.js");

const [address, model, key] = process.argv.slice(2);
const client = new Client(address, { timeoutMs: 20_000 });

async function main() {
  const asked = new grpc.Metadata();
  asked.set("x-request-id", "node-refused-17");
  try {
    await client.unary("generate", { model, query: "q" }, { metadata: asked });
    console.log(JSON.stringify({ error: null }));
  } catch (error) {
    if (!(error instanceof SaxGatewayError)) throw error;
    const details = error.details.map((detail) => detail.type_url);
    const { codeName: code, message, requestId, rawMessage } = error;
    console.log(JSON.stringify({ code, message, requestId, rawMessage, details }));
  }
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${key}`);
  const { texts } = await client.unary("generate", { model, query: "q" }, { metadata });
  console.log(JSON.stringify({ texts: texts.map((t) => t.text) }));
}

main().finally(() => client.close());
