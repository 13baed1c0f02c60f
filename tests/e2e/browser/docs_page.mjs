// Drives the /docs page in headless Chromium (Debian's, through playwright-core): loads it,
// with KEY first enters it in the Authorize dialog (the `bearer` scheme), runs "Try it out"
// for POST /generate and POST /generate_stream, saves a screenshot, and prints one JSON
// object: the console errors, the schemes the dialog offered, and, per operation, the status
// and body shown.
//
//   node tests/e2e/browser/docs_page.mjs BASE_URL MODEL SCREENSHOT [KEY]
import { chromium } from "playwright-core";

const [baseUrl, model, screenshot, key] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
  ],
});
const errors = [];
const result = { errors, operations: {} };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 2000 } });
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  page.on("pageerror", (error) => errors.push(String(error)));
  page.on("requestfailed", (request) => errors.push(`failed: ${request.url()}`));
  await page.goto(`${baseUrl}/docs`, { waitUntil: "load" });
  await page.waitForSelector("#operations-SaxGateway-Generate", { timeout: 30_000 });
  result.title = await page.locator(".info .title").first().innerText();
  if (key !== undefined) result.schemes = await authorize(page, key);

  for (const operation of ["Generate", "GenerateStream"]) {
    const block = page.locator(`#operations-SaxGateway-${operation}`);
    await block.locator(".opblock-summary").first().click();
    await block.locator(".try-out__btn").click();
    const body = block.locator("textarea.body-param__text");
    result.operations[operation] = { example: JSON.parse(await body.inputValue()) };
    await body.fill(JSON.stringify({ model, query: "from the docs page" }));
    await block.locator("button.execute").click();
    const live = block.locator(".live-responses-table .response").first();
    await live.locator(".response-col_status").waitFor({ timeout: 30_000 });
    Object.assign(result.operations[operation], {
      status: (await live.locator(".response-col_status").innerText()).trim(),
      body: await live.locator(".response-col_description .microlight").first().innerText(),
      url: await block.locator(".request-url pre").innerText(),
    });
  }
  await page.screenshot({ path: screenshot, fullPage: false });
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));

// Enters `key` for the `bearer` scheme in the Authorize dialog; returns the names of the
// schemes the dialog offers. Fails at once when the page has no Authorize button.
async function authorize(page, key) {
  const open = page.locator(".auth-wrapper .btn.authorize");
  if ((await open.count()) === 0) throw new Error("the page has no Authorize button");
  await open.click();
  const dialog = page.locator(".dialog-ux .modal-ux");
  const schemes = await dialog.locator(".auth-container h4 code").allInnerTexts();
  const bearer = dialog.locator(".auth-container").filter({ has: page.locator("h4 code", { hasText: /^bearer$/ }) });
  await bearer.locator("input").fill(key);
  await bearer.locator("button.authorize").click();
  await dialog.locator("button.btn-done").first().click();
  return schemes;
}
