// The repository's built Node client (clients/node/dist): what a SaxGatewayError carries of a
// failed call (its details, the request ID of their RequestInfo, the status message as it
// arrived), and the request it refuses before sending: two members of one oneof set in a
// plain object. One JSON line each.
//
//   node tests/e2e/node/error_details.js ADDRESS
const grpc = require("@grpc/grpc-js");
const dist = require("../../../clients/node/dist/index.js");

const { Client, SaxGatewayError } = dist;

const [address] = process.argv.slice(2);
const client = new Client(address, { timeoutMs: 20_000 });
// The client's own grpc-js, as a project whose @grpc/grpc-js is another copy (another
// version, or none it may import: pnpm) must use it: grpc-js refuses another copy's Metadata.
const every = new dist.grpc.Metadata();
every.set("x-request-id", "node-client-wide-5");
const tagged = new Client(address, { timeoutMs: 20_000, metadata: every });

function failure(error) {
  if (!(error instanceof SaxGatewayError)) return { name: error.name, message: error.message };
  return {
    code: error.codeName,
    message: error.message,
    requestId: error.requestId ?? null,
    rawMessage: error.rawMessage,
    details: error.details.map((detail) => detail.type_url),
  };
}

async function main() {
  const metadata = new grpc.Metadata();
  metadata.set("x-request-id", "node-details-17");
  const calls = {
    unknown_model: () => client.unary("generate", { model: "/sax/test/node-nosuch", query: "q" }, { metadata }),
    text_and_image: () =>
      client.unary("multimodalGenerate", {
        model: "/sax/test/node-nosuch",
        items: [{ text: "a cat" }, { text: "and", image_bytes: Buffer.from("png") }],
      }),
    three_of_a_oneof: () =>
      client.unary("multimodalScore", {
        model: "/sax/test/node-nosuch",
        prefix_items: [{ text: "a" }],
        suffix_items: [{ video: Buffer.from("v") }, { text: "b", image_bytes: Buffer.from("i"), video: Buffer.from("v") }],
      }),
    one_of_each: () =>
      client.unary("multimodalGenerate", {
        model: "/sax/test/node-nosuch",
        items: [{ text: "a cat", image_bytes: undefined }, { image_bytes: Buffer.from("png"), text: null }],
      }),
    // Metadata the client sends with every call (an API key, say), a call's own beside it
    // and, for a key both set, instead of it.
    client_metadata: () => tagged.unary("generate", { model: "/sax/test/node-nosuch", query: "q" }),
    call_metadata_wins: () =>
      tagged.unary("generate", { model: "/sax/test/node-nosuch", query: "q" }, { metadata }),
  };
  for (const [step, call] of Object.entries(calls)) {
    try {
      await call();
      console.log(JSON.stringify({ step, error: null }));
    } catch (error) {
      console.log(JSON.stringify({ step, ...failure(error) }));
    }
  }
}

main().finally(() => {
  client.close();
  tagged.close();
});
