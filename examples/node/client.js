// A Node.js client of the SaxGateway gRPC API (@grpc/grpc-js + @grpc/proto-loader): publishes
// the embedded cell's test LM, generates, streams a generation, and unpublishes, printing one
// JSON line per step.
//
//   npm ci && node examples/node/client.js [ADDRESS] [MODEL]
//
// ADDRESS is Envoy's public port (default 127.0.0.1:8888), which serves native gRPC beside
// HTTP/JSON. The API is read from proto/; its google/api imports from SAXGW_GOOGLEAPIS
// (default .build/googleapis, which `scripts/googleapis` fills from the Python wheel; any
// googleapis checkout works).
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const address = process.argv[2] || "127.0.0.1:8888";
const model = process.argv[3] || "/sax/test/node-example";
const repo = path.join(__dirname, "..", "..");
const googleapis = process.env.SAXGW_GOOGLEAPIS || path.join(repo, ".build", "googleapis");

// keepCase: proto field names (model_path), as in the HTTP/JSON API.
const definition = protoLoader.loadSync("saxgateway/v1/gateway.proto", {
  includeDirs: [path.join(repo, "proto"), googleapis],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
});
const { SaxGateway } = grpc.loadPackageDefinition(definition).saxgateway.v1;
const client = new SaxGateway(address, grpc.credentials.createInsecure());

function deadline(seconds = 30) {
  return new Date(Date.now() + seconds * 1000);
}

// Promisified unary call: resolves with the response, rejects with a ServiceError.
function call(method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: deadline() }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

// Collects a server stream's messages; a failed final message ends it like an error.
function stream(method, request) {
  return new Promise((resolve, reject) => {
    const messages = [];
    client[method](request, { deadline: deadline() })
      .on("data", (message) => messages.push(message))
      .on("error", reject)
      .on("end", () => resolve(messages));
  });
}

function print(step, value) {
  console.log(JSON.stringify({ step, ...value }));
}

async function main() {
  const published = await call("PublishModel", {
    model,
    model_path: "sax_gateway.testing.TestLM",
    checkpoint: "None",
    replicas: 1,
    overrides: { text: "hello from node" },
  });
  print("publish", { model: published.model, path: published.path });
  try {
    const ready = await call("WaitForReady", { model });
    print("ready", { active_replicas: ready.active_replicas });

    const generated = await call("Generate", { model, query: "ignored" });
    print("generate", { texts: generated.texts.map((t) => t.text) });

    const messages = await stream("GenerateStream", { model, query: "ignored" });
    const last = messages[messages.length - 1];
    if (last.error) throw Object.assign(new Error(last.error.message), { code: last.error.code });
    print("stream", {
      deltas: messages.flatMap((m) => m.deltas.map((d) => d.text)),
      text: last.texts[0].text,
    });
  } finally {
    const unpublished = await call("UnpublishModel", { model });
    print("unpublish", { model: unpublished.model });
  }
}

main()
  .catch((error) => {
    console.error(`error: ${error.code ?? ""} ${error.details ?? error.message}`);
    process.exitCode = 1;
  })
  .finally(() => client.close());
