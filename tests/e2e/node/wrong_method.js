// The repository's built Node client (clients/node/dist), called from plain JavaScript with
// what TypeScript would have refused: a name SaxGatewayDefinition lacks, a stream called as
// unary and the other way round, a URL for the gateway's address. Each error's message, one JSON line; no server is needed,
// since each fails before any call.
const { Client } = require("../../../clients/node/dist/index.js");

// The promise's rejection: a call that threw instead would escape this.
function messageOf(promise) {
  return promise.then(
    () => null,
    (error) => `${error.name}: ${error.message}`,
  );
}

async function main() {
  const client = new Client("127.0.0.1:1");
  try {
    const out = {
      unknown: await messageOf(client.unary("nope", {})),
      inherited: await messageOf(client.unary("toString", {})),
      stream_as_unary: await messageOf(client.unary("generateStream", {})),
      unary_as_stream: await messageOf(client.stream("generate", {}).next()),
      url_target: await messageOf(Promise.resolve().then(() => new Client("http://localhost:8888"))),
    };
    console.log(JSON.stringify(out));
  } finally {
    client.close();
  }
}

main();
