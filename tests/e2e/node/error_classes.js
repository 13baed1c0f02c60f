// The repository's built Node client (clients/node/dist): the class of SaxGatewayError each
// status code gives, as a stream's in-band status makes it (fromStatus); codes no gRPC
// status has (99), or OK where an error should be, are UNKNOWN. One JSON object, by code.
//
//   node tests/e2e/node/error_classes.js
const dist = require("../../../clients/node/dist/index.js");

const out = {};
for (const number of [...Array(17).keys(), 99]) {
  const error = dist.SaxGatewayError.fromStatus({ code: number, message: "m", details: [] });
  const exported = dist[error.constructor.name] === error.constructor;
  out[number] = { class: error.constructor.name, name: error.name, code: error.codeName, exported };
}
console.log(JSON.stringify(out));
