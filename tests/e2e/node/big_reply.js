// The repository's built Node client (clients/node/dist) receiving a reply over grpc-js's
// default receive limit (4 MiB): a custom model's echo of 5 MiB. Prints the reply's length,
// or the error's code.
//
//   node tests/e2e/node/big_reply.js ADDRESS MODEL
const { Client } = require("../../../clients/node/dist/index.js");

const [address, model] = process.argv.slice(2);
const client = new Client(address);
const request = Buffer.alloc(5 << 20, "a");
client
  .unary("custom", { model, method_name: "echo", request })
  .then(
    (reply) => console.log(JSON.stringify({ length: reply.response.length })),
    (error) => console.log(JSON.stringify({ code: error.codeName, message: error.message })),
  )
  .finally(() => client.close());
