// The repository's built Node client (clients/node/dist) with channel options: a service
// config whose retry policy retries NOT_FOUND (cheap to retry here) three times, the call
// carrying REQUEST_ID, so that Envoy's access log shows each attempt. Prints the error's code.
//
//   node tests/e2e/node/channel_options.js ADDRESS REQUEST_ID
const { Client, grpc } = require("../../../clients/node/dist/index.js");

const [address, requestId] = process.argv.slice(2);
const retryPolicy = {
  maxAttempts: 3,
  initialBackoff: "0.01s",
  maxBackoff: "0.01s",
  backoffMultiplier: 1,
  retryableStatusCodes: ["NOT_FOUND"],
};
const config = { methodConfig: [{ name: [{ service: "saxgateway.v1.SaxGateway" }], retryPolicy }] };
const client = new Client(address, { channelOptions: { "grpc.service_config": JSON.stringify(config) } });

const metadata = new grpc.Metadata();
metadata.set("x-request-id", requestId);
client
  .unary("generate", { model: "/sax/test/no-such-model", query: "q" }, { metadata })
  .then(
    () => console.log(JSON.stringify({ code: "OK" })),
    (error) => console.log(JSON.stringify({ code: error.codeName })),
  )
  .finally(() => client.close());
