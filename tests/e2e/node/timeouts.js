// The repository's built Node client (clients/node/dist): a timeoutMs of Infinity (or one too
// long to be any) is no deadline of the client's, and a NaN a TypeError of the call; grpc-js
// threw either from a timer ("Deadline is too far in the future"), out of reach of the
// caller's catch, and the process died. One JSON line each.
//
//   node tests/e2e/node/timeouts.js ADDRESS
const { Client } = require("../../../clients/node/dist/index.js");

const [address] = process.argv.slice(2);
const client = new Client(address, { timeoutMs: Infinity });

async function outcome(call) {
  try {
    if (Symbol.asyncIterator in call) for await (const _ of call) break;
    else return { message: (await call).message };
    return { streamed: true };
  } catch (error) {
    return { error: `${error.name}: ${error.message}` };
  }
}

async function main() {
  const steps = {
    endless: () => client.unary("getInfo", {}),
    far: () => client.unary("getInfo", {}, { timeoutMs: 1e15 }),
    nan: () => client.unary("getInfo", {}, { timeoutMs: NaN }),
    stream_nan: () => client.stream("watchAddresses", { model: "/sax/test/x" }, { timeoutMs: NaN }),
  };
  for (const [step, call] of Object.entries(steps)) console.log(JSON.stringify({ step, ...(await outcome(call())) }));
}

main().finally(() => client.close());
