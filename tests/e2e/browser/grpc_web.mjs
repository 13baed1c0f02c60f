// grpc-web from a page in headless Chromium (Debian's, through playwright-core): Connect-ES's
// @connectrpc/connect-web, unbundled, on a page of an allowed origin, calls the gateway on
// another origin with no generated code (the API read from release/saxgateway-v1.binpb), as
// docs/clients.md tells browser apps to. CORS preflights and the headers a page may read
// (grpc-status, grpc-status-details-bin, x-request-id) are the browser's to enforce here.
// Prints one JSON object: the console errors and what each call returned or raised.
//
//   node tests/e2e/browser/grpc_web.mjs BASE_URL ORIGIN MODEL FAILING_MODEL
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { printRunOnPage } from "./_chromium.mjs";

const [baseUrl, origin, model, failing] = process.argv.slice(2);
const root = new URL("../../../", import.meta.url).pathname;
const packages = ["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-web"];

// The page resolves the packages' bare imports (and their subpaths, "@bufbuild/protobuf/wire")
// with an import map made from their package.json "exports", as a bundler would.
const imports = {};
for (const name of packages) {
  const manifest = JSON.parse(await readFile(join(root, "node_modules", name, "package.json")));
  for (const [subpath, target] of Object.entries(manifest.exports)) {
    if (target.import) imports[join(name, subpath)] = `/node_modules/${join(name, target.import)}`;
  }
}
const page = `<!doctype html><title>app</title>
<script type="importmap">${JSON.stringify({ imports })}</script>`;

// The page, the packages and the protoset come from the origin.
const fileFor = (path) => {
  if (path === "/api.binpb") return join(root, "release/saxgateway-v1.binpb");
  return path.startsWith("/node_modules/") ? join(root, path.slice(1)) : null;
};
await printRunOnPage({
  origin,
  html: page,
  fileFor,
  script:
    async ([baseUrl, model, failing]) => {
      const { createFileRegistry, fromBinary } = await import("@bufbuild/protobuf");
      const { FileDescriptorSetSchema } = await import("@bufbuild/protobuf/wkt");
      const { Code, ConnectError, createClient } = await import("@connectrpc/connect");
      const { createGrpcWebTransport } = await import("@connectrpc/connect-web");
      const protoset = new Uint8Array(await (await fetch("/api.binpb")).arrayBuffer());
      const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, protoset));
      const client = createClient(
        registry.getService("saxgateway.v1.SaxGateway"),
        createGrpcWebTransport({ baseUrl }),
      );
      const badRequest = registry.getMessage("google.rpc.BadRequest");
      const failure = async (call) => {
        try {
          await call();
          return null;
        } catch (error) {
          const e = ConnectError.from(error);
          return {
            code: Code[e.code],
            fields: e.findDetails(badRequest).flatMap((d) => d.fieldViolations.map((v) => v.field)),
            request_id: e.metadata.get("x-request-id"),
          };
        }
      };
      const out = {};
      const { texts } = await client.generate({ model, query: "q" }, { timeoutMs: 20_000 });
      out.generate = texts.map((t) => t.text);
      out.stream = [];
      for await (const item of client.generateStream({ model, query: "q" }, { timeoutMs: 20_000 })) {
        out.stream.push({ deltas: item.deltas.map((d) => d.text), done: item.done });
      }
      const headers = { "x-request-id": "from-the-page" };
      out.bad = await failure(() => client.generate({ model: "lm2b", query: "q" }, { headers }));
      out.deadline = await failure(() =>
        client.generate({ model: failing, query: "q" }, { timeoutMs: 300 }),
      );
      const abort = new AbortController();
      setTimeout(() => abort.abort(), 200);
      out.aborted = await failure(() =>
        client.generate({ model: failing, query: "q" }, { signal: abort.signal }),
      );
      const seen = [];
      const streamed = await failure(async () => {
        for await (const item of client.generateStream({ model: failing, query: "q" })) {
          seen.push(...item.deltas.map((d) => d.text));
        }
      });
      out.stream_error = { ...streamed, seen };
      return out;
    },
  args: [baseUrl, model, failing],
});
