// The typed Node.js client (clients/node, @sax-gateway/client) in a project of its own:
//
//   npm pack /path/to/sax-gateway/clients/node   # writes sax-gateway-client-0.1.0.tgz here
//   npm install ./sax-gateway-client-0.1.0.tgz
//   npm install --save-dev typescript   # else npx fetches npm's unrelated `tsc` package
//   npx tsc --module commonjs --target es2022 typed_client.ts
//   node typed_client.js [ADDRESS] [MODEL]
//
// (--module commonjs: TypeScript 7 emits ES modules by default, which node refuses to load
// from a .js file outside a "type": "module" package.)
//
// Publishes the embedded cell's test LM, generates (extra_inputs as plain values: a number, a
// string and a list), streams, shows the errors it catches, cancels a call, and unpublishes;
// one JSON line per step.
import { Client, SaxGatewayError, pb } from "@sax-gateway/client";

const address = process.argv[2] ?? "127.0.0.1:8888";
const model = process.argv[3] ?? "/sax/test/typed-example";
const client = new Client(address, { timeoutMs: 30_000 });

function print(step: string, value: object): void {
  console.log(JSON.stringify({ step, ...value }));
}

async function failure(call: Promise<unknown> | AsyncIterable<unknown>): Promise<SaxGatewayError> {
  try {
    if (Symbol.asyncIterator in call) for await (const _ of call);
    else await call;
  } catch (error) {
    if (error instanceof SaxGatewayError) return error;
    throw error;
  }
  throw new Error("expected the call to fail");
}

async function main(): Promise<void> {
  await client.unary("publishModel", {
    model,
    model_path: "sax_gateway.testing.TestLM",
    checkpoint: "None",
    replicas: 1,
    // Six tokens ("hello from typescript hello ..."), but a stream fails after the fourth.
    overrides: { text: "hello from typescript", length: "6", fail_after_tokens: "4" },
  });
  try {
    const ready = await client.unary("waitForReady", { model });
    print("ready", { active_replicas: ready.active_replicas });

    const generated: pb.GenerateResponse = await client.unary("generate", {
      model,
      query: "ignored",
      extra_inputs: { per_example_max_decode_steps: 2, stop: "\n", bias: [0.5, -0.5] },
    });
    print("generate", { texts: generated.texts.map((t) => t.text) });

    const deltas: string[] = [];
    let last: pb.GenerateStreamResponse | undefined;
    const three = { per_example_max_decode_steps: 3 };
    for await (const item of client.stream("generateStream", { model, query: "x", extra_inputs: three })) {
      deltas.push(...item.deltas.map((d) => d.text));
      last = item;
    }
    print("stream", { deltas, done: last?.done, text: last?.texts[0].text });

    const bad = await failure(client.unary("generate", { model: "typed-example", query: "x" }));
    print("bad_request", { code: bad.codeName, fields: bad.fieldViolations.map((v) => v.field) });
    const missing = await failure(client.unary("listCell", { model: "/sax/test/no-such-model" }));
    print("not_found", { code: missing.codeName });
    const midway = await failure(client.stream("generateStream", { model, query: "x" }));
    print("stream_error", { code: midway.codeName });

    // An AbortSignal cancels a call (a unary one here; a stream the same way).
    const controller = new AbortController();
    const pending = client.unary("generate", { model, query: "x" }, { signal: controller.signal });
    controller.abort();
    print("cancelled", { code: (await failure(pending)).codeName });
  } finally {
    await client.unary("unpublishModel", { model });
    print("unpublish", { model });
    client.close();
  }
}

main().catch((error) => {
  console.error(`error: ${error}`);
  process.exitCode = 1;
});
