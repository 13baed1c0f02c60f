// grpc-web from Node.js with Connect-ES (@connectrpc/connect-node), the framing a browser's
// grpc-web client sends, over HTTP/1.1 to Envoy's public port. No generated code: the API is
// read from the release descriptor set (release/saxgateway-v1.binpb) into a registry.
// Generates, streams a generation, and reads a bad request's google.rpc.BadRequest, printing
// one JSON line per step.
//
//   npm ci && node examples/node/grpc_web.mjs [BASE_URL] [MODEL]
//
// BASE_URL defaults to http://127.0.0.1:8888; MODEL (default /sax/test/lm2b) must be published.
// In a browser, use createGrpcWebTransport from @connectrpc/connect-web the same way, from a
// page whose origin the gateway allows (saxgw up --cors-origin ...).
import { readFileSync } from "node:fs";

import { create, createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";

const baseUrl = process.argv[2] || "http://127.0.0.1:8888";
const model = process.argv[3] || "/sax/test/lm2b";
const protoset = new URL("../../release/saxgateway-v1.binpb", import.meta.url);

const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(protoset)));
const service = registry.getService("saxgateway.v1.SaxGateway");
const badRequest = registry.getMessage("google.rpc.BadRequest");
const transport = createGrpcWebTransport({ baseUrl, httpVersion: "1.1" });
const client = createClient(service, transport);
const print = (line) => console.log(JSON.stringify(line));

// Without generated code, a google.protobuf.Value is given in its proto form.
const number = (value) => create(ValueSchema, { kind: { case: "numberValue", value } });
const { texts } = await client.generate(
  { model, query: "hi", extraInputs: { per_example_max_decode_steps: number(2) } },
  { timeoutMs: 30_000 },
);
print({ step: "generate", texts: texts.map((t) => t.text) });

const deltas = [];
let last;
for await (const item of client.generateStream({ model, query: "hi" }, { timeoutMs: 30_000 })) {
  deltas.push(...item.deltas.map((d) => d.text));
  last = item;
}
print({ step: "stream", deltas, done: last.done, text: last.texts[0].text });

try {
  await client.generate({ model: "lm2b", query: "hi" }, { timeoutMs: 30_000 });
} catch (error) {
  const failure = ConnectError.from(error);
  const fields = failure.findDetails(badRequest).flatMap((d) => d.fieldViolations);
  print({ step: "error", code: Code[failure.code], fields: fields.map((v) => v.field) });
}
