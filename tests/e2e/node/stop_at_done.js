// The repository's built Node client (clients/node/dist) against a grpc-js server that sends a
// stream's last message (done) and its OK status 300 ms apart, as a loaded gateway or network
// may. The caller breaks out of its loop at done; the server reports whether the call ended
// well or was cancelled. One JSON line.
const grpc = require("@grpc/grpc-js");
const { Client, pb } = require("../../../clients/node/dist/index.js");

const method = pb.SaxGatewayDefinition.methods.generateStream;
const { requestType: Request, responseType: Response } = method;

function serve(ended) {
  const server = new grpc.Server();
  const definition = {
    path: `/${pb.SaxGatewayDefinition.fullName}/${method.name}`,
    requestStream: false,
    responseStream: true,
    requestSerialize: (value) => Buffer.from(Request.encode(value).finish()),
    requestDeserialize: (bytes) => Request.decode(bytes),
    responseSerialize: (value) => Buffer.from(Response.encode(value).finish()),
    responseDeserialize: (bytes) => Response.decode(bytes),
  };
  server.addService({ generateStream: definition }, {
    generateStream(call) {
      let cancelled = false;
      call.on("cancelled", () => (cancelled = true));
      call.write(Response.fromPartial({ deltas: [{ text: "one" }, { text: " two" }] }));
      call.write(Response.fromPartial({ done: true, texts: [{ text: "one two" }] }));
      setTimeout(() => {
        if (!cancelled) call.end();
        ended(cancelled ? "cancelled" : "ok");
      }, 300);
    },
  });
  return new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) =>
      error ? reject(error) : resolve({ server, port }),
    ),
  );
}

async function main() {
  let ended;
  const status = new Promise((resolve) => (ended = resolve));
  const { server, port } = await serve(ended);
  const client = new Client(`127.0.0.1:${port}`, { timeoutMs: 10_000 });
  let text;
  try {
    for await (const item of client.stream("generateStream", { model: "/sax/test/m", query: "q" })) {
      if (item.done) {
        text = item.texts[0].text;
        break;
      }
    }
    console.log(JSON.stringify({ text, server: await status }));
  } finally {
    client.close();
    server.forceShutdown();
  }
}

main().catch((error) => {
  console.error(`error: ${error}`);
  process.exitCode = 1;
});
