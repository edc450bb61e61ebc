// The local hub's demo page (which runs wshub-client) in Debian's headless Chromium: connect
// with the token offered as a subprotocol, subscribe, receive a push injected through
// /_local/sqs, keep a screenshot.
// Usage: NODE_PATH=.npm-e2e/node_modules node scripts/e2e-demo.cjs http://127.0.0.1:PORT OUT.png
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const [base, screenshot] = process.argv.slice(2);
const TIMEOUT = 15000;

async function main() {
  // A fresh profile each run; playwright takes it as the persistent context's directory.
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "wshub-e2e-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1000, height: 900 },
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(TIMEOUT);
    await page.goto(base + "/");
    await page.fill("#token", "hello");
    await page.click("#connect");
    await page.waitForFunction(() => document.getElementById("status").textContent === "connected");
    await page.waitForFunction(() => document.getElementById("user-id").textContent === "anonymous");
    // The page runs wshub-client; a browser drops a socket whose offered subprotocol is not
    // accepted in the 101, so reaching "connected" shows the token went as a subprotocol.
    const log = page.locator("#log");
    if (!(await log.textContent()).includes("state connected")) {
      throw new Error("the page's client did not report the connected state: " + (await log.textContent()));
    }
    await page.fill("#topic", "demo-e2e");
    await page.click("#subscribe");
    await page.waitForFunction(() => document.getElementById("log").textContent.includes("subscribed demo-e2e"));

    const response = await fetch(base + "/_local/sqs", {
      method: "POST",
      body: JSON.stringify({ topic: "demo-e2e", data: { text: "pushed-from-sqs" } }),
    });
    const batch = await response.json();
    if (response.status !== 200 || batch.batchItemFailures.length !== 0) {
      throw new Error(`/_local/sqs answered ${response.status} ${JSON.stringify(batch)}`);
    }
    await page.locator("#log .push", { hasText: "pushed-from-sqs" }).waitFor();
    fs.mkdirSync(path.dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log("demo page received the push; screenshot at " + screenshot);
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
