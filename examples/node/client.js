// A Node.js client of the SaxGateway gRPC API (@grpc/grpc-js + @grpc/proto-loader): publishes
// the embedded cell's test LM, generates, streams a generation, and unpublishes, printing one
// JSON line per step.
//
//   npm install @grpc/grpc-js @grpc/proto-loader && node examples/node/client.js [ADDRESS] [MODEL]
//
// ADDRESS is Envoy's public port (default 127.0.0.1:8888), which serves native gRPC beside
// HTTP/JSON. The API is read from the proto release bundle, release/proto/, which holds
// gateway.proto and every google/ proto it imports (SAXGW_PROTO points elsewhere, e.g. at the
// unpacked release/saxgateway-v1-proto.tar.gz). For a typed client see clients/node/.
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const address = process.argv[2] || "127.0.0.1:8888";
const model = process.argv[3] || "/sax/test/node-example";
const repo = path.join(__dirname, "..", "..");
const protoDir = process.env.SAXGW_PROTO || path.join(repo, "release", "proto");

// keepCase: proto field names (model_path), as in the HTTP/JSON API.
const definition = protoLoader.loadSync("saxgateway/v1/gateway.proto", {
  includeDirs: [protoDir],
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

    // extra_inputs is a map of google.protobuf.Value: proto-loader wants each value in its
    // proto form (numberValue, stringValue, listValue), not a bare JSON value.
    const capped = await call("Generate", {
      model,
      query: "ignored",
      extra_inputs: {
        per_example_max_decode_steps: { numberValue: 2 }, // a number: at most 2 tokens
        stop: { stringValue: "\n" }, // a string
        bias: { listValue: { values: [{ numberValue: 0.5 }, { numberValue: -0.5 }] } }, // a list
      },
    });
    print("extra_inputs", { texts: capped.texts.map((t) => t.text) });

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
