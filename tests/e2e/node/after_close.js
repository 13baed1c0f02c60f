// The repository's built Node client (clients/node/dist): calls made once the client is
// closed, unary and streaming (a stream made before the close, read after it). Each one's
// error, one JSON line; no server is needed, since none is sent.
const { Client, SaxGatewayError } = require("../../../clients/node/dist/index.js");

function described(error) {
  return {
    class: error.constructor.name,
    gateway_error: error instanceof SaxGatewayError,
    code: error.codeName ?? null,
    message: error.message,
  };
}

async function main() {
  const client = new Client("127.0.0.1:1");
  const pending = client.stream("generateStream", { model: "/sax/test/m", query: "q" });
  client.close();
  const out = {};
  try {
    await client.unary("getInfo", {});
  } catch (error) {
    out.unary = described(error);
  }
  try {
    for await (const _ of pending);
  } catch (error) {
    out.stream = described(error);
  }
  console.log(JSON.stringify(out));
}

main();
