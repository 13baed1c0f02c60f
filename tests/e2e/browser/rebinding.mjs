// DNS rebinding in headless Chromium (Debian's, through playwright-core): Chromium resolves
// evil.example to 127.0.0.1 (--host-resolver-rules), as a victim's browser does once the
// attacker has re-pointed the name; a page of that origin then calls the local stack as
// its own origin. Prints one JSON object: the status and body of each call.
//
//   node tests/e2e/browser/rebinding.mjs PORT MODEL_PATH
import { chromium } from "playwright-core";

const [port, modelPath] = process.argv.slice(2);
const origin = `http://evil.example:${port}`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--host-resolver-rules=MAP evil.example 127.0.0.1",
  ],
});
const result = {};
try {
  const page = await browser.newPage();
  const landing = await page.goto(`${origin}/`, { waitUntil: "load" });
  result.landing = { status: landing.status() };
  // What the page's script does: a "simple request" (text/plain, no preflight) to publish,
  // then a read of the cell, both same-origin to the browser.
  Object.assign(result, await page.evaluate(async (modelPath) => {
    const call = async (path, init) => {
      const response = await fetch(path, init);
      return { status: response.status, body: await response.text() };
    };
    const model = "/sax/test/rebound-in-chromium";
    const body = JSON.stringify({ model, model_path: modelPath, checkpoint: "None", replicas: 0 });
    return {
      publish: await call("/publish", { method: "POST", headers: { "content-type": "text/plain" }, body }),
      list: await call(`/listcell?model=${encodeURIComponent(model)}`),
    };
  }, modelPath));
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
