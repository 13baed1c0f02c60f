// Headless Chromium (Debian's, through playwright-core) for the pages that call the gateway
// from another origin: every request goes through the test's proxy, which serves the page's
// origin and passes the rest on.
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
