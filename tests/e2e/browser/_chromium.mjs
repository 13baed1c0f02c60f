// Headless Chromium (Debian's, through playwright-core) for the pages that call the gateway
// from another origin: every request goes through the test's proxy, which serves the page's
// origin and passes the rest on.
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { chromium } from "playwright-core";

/** Chromium whose requests all go through the HTTP proxy on 127.0.0.1:`proxyPort`. */
export function launchBehindProxy(proxyPort) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run",
      `--proxy-server=http://127.0.0.1:${proxyPort}`,
      // The origin's address is the proxy's: keep Chromium's local-network checks (not CORS,
      // which these pages are about) out of the way of the gateway on 127.0.0.1.
      "--disable-features=PrivateNetworkAccessRespectPreflightResults,LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests",
    ],
  });
}

/** A new page of `browser` whose console errors and uncaught errors go into `errors`. */
export async function pageCollectingErrors(browser, errors) {
  const page = await browser.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  page.on("pageerror", (error) => errors.push(String(error)));
  return page;
}

/**
 * Runs `script(args)` in a page of `origin` and prints one JSON object: what it returned, and
 * the page's console errors as `errors`. This process serves the origin as Chromium's HTTP
 * proxy (loopback, where the gateway is, bypasses it): `fileFor(path)` names the file to serve
 * for a path, or null for the page itself, `html`. Not page.route(): with request interception
 * on, Playwright answers CORS preflights itself.
 */
export async function printRunOnPage({ origin, html, fileFor, script, args }) {
  const proxy = createServer(async (request, response) => {
    const file = fileFor(new URL(request.url, origin).pathname);
    if (file === null) {
      response.writeHead(200, { "content-type": "text/html" });
      return response.end(html);
    }
    try {
      const body = await readFile(file);
      const javascript = /\.m?js$/.test(file);
      response.writeHead(200, {
        "content-type": javascript ? "text/javascript" : "application/octet-stream",
      });
      response.end(body);
    } catch {
      response.writeHead(404);
      response.end();
    }
  });
  await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const browser = await launchBehindProxy(proxy.address().port);
  const errors = [];
  let result;
  try {
    const page = await pageCollectingErrors(browser, errors);
    await page.goto(`${origin}/`);
    result = await page.evaluate(script, args);
    result.errors = errors;
  } finally {
    await browser.close();
    proxy.close();
  }
  console.log(JSON.stringify(result));
}
