// Runs the real `openai` npm package in headless Chromium (Debian's, through playwright-core)
// on a page of an allowed origin, against the OpenAI-compatible API on another origin: what a
// browser app built on the SDK (`dangerouslyAllowBrowser`) does, CORS preflights included.
// Prints one JSON object: the console errors and what each call returned or raised.
//
//   node tests/e2e/browser/openai_sdk.mjs BASE_URL ORIGIN MODEL BUSY_MODEL
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { printRunOnPage } from "./_chromium.mjs";

const [baseUrl, origin, model, busy] = process.argv.slice(2);
const sdk = dirname(createRequire(import.meta.url).resolve("openai")); // its CommonJS index.js
// The page and the SDK's ES modules (node_modules/openai, unbundled) come from the origin.
await printRunOnPage({
  origin,
  html: "<!doctype html><title>app</title>",
  fileFor: (path) => (path.startsWith("/openai/") ? join(sdk, path.slice("/openai/".length)) : null),
  script:
    async ([baseURL, model, busy]) => {
      const { default: OpenAI } = await import("/openai/index.mjs");
      const client = new OpenAI({ baseURL, apiKey: "x", maxRetries: 0, dangerouslyAllowBrowser: true });
      const out = {};
      const failure = (e) => ({
        name: e.constructor.name, status: e.status ?? null, error: e.error ?? null,
        requestID: e.requestID ?? null, retryAfter: e.headers?.get("retry-after") ?? null,
      });
      try {
        out.models = (await client.models.list()).data.map((m) => m.id);
        const stream = await client.chat.completions.create({
          model, messages: [{ role: "user", content: "hi" }], stream: true,
        });
        out.text = "";
        for await (const chunk of stream) out.text += chunk.choices[0]?.delta?.content ?? "";
      } catch (e) {
        out.failed = { ...failure(e), message: String(e) };
      }
      for (const [name, call] of [
        ["notFound", () => client.completions.create({ model: "gpt-4", prompt: "x" })],
        ["busy", () => client.completions.create(
          { model: busy, prompt: "x", stream: true }, { headers: { "grpc-timeout": "1S" } })],
      ]) {
        try {
          await call();
          out[name] = "no error";
        } catch (e) {
          out[name] = failure(e);
        }
      }
      return out;
    },
  args: [baseUrl, model, busy],
});
