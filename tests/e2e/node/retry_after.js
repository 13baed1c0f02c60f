// The repository's built Node client (clients/node/dist) calling a model that is overloaded
// for good: what its SaxGatewayError says of when to try again (retryAfterMs, from the
// grpc-retry-pushback-ms trailer), for a unary call and a stream. One JSON line each.
//
//   node tests/e2e/node/retry_after.js ADDRESS MODEL
const { Client, SaxGatewayError } = require("../../../clients/node/dist/index.js");

const [address, model] = process.argv.slice(2);
const client = new Client(address, { timeoutMs: 30_000 });

async function failure(call) {
  try {
    if (Symbol.asyncIterator in call) for await (const _ of call);
    else await call;
  } catch (error) {
    if (error instanceof SaxGatewayError) return { code: error.codeName, retryAfterMs: error.retryAfterMs ?? null };
    throw error;
  }
  throw new Error("expected the call to fail");
}

async function main() {
  console.log(JSON.stringify(await failure(client.unary("generate", { model, query: "q" }))));
  console.log(JSON.stringify(await failure(client.stream("generateStream", { model, query: "q" }))));
}

main().finally(() => client.close());
