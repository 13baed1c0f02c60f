// Connect-ES's grpc-web transport (@connectrpc/connect-node, what docs/clients.md recommends)
// against a stack that asks for an API key: a call without one, which Envoy itself refuses.
// Connect-ES reads the status from grpc-status-details-bin where there is one, so the message
// it raises is that Status's. Prints one JSON line: the code, the message and the request ID
// of the RequestInfo detail.
//
//   node tests/e2e/node/connect_refused.mjs BASE_URL REQUEST_ID
import { readFileSync } from "node:fs";

import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";

const [baseUrl, requestId] = process.argv.slice(2);
const protoset = new URL("../../../release/saxgateway-v1.binpb", import.meta.url);
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(protoset)));
const client = createClient(
  registry.getService("saxgateway.v1.SaxGateway"),
  createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
);
const requestInfo = registry.getMessage("google.rpc.RequestInfo");

try {
  await client.generate(
    { model: "/sax/test/x", query: "q" },
    { timeoutMs: 30_000, headers: { "x-request-id": requestId } },
  );
  console.log(JSON.stringify({ error: null }));
} catch (error) {
  const failure = ConnectError.from(error);
  const [info] = failure.findDetails(requestInfo);
  console.log(
    JSON.stringify({ code: Code[failure.code], message: failure.rawMessage, requestId: info?.requestId }),
  );
}
