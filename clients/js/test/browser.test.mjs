// The same client in headless Chromium (Debian's, driven by playwright-core as
// scripts/e2e-local.sh installs them): the built ES modules served to a page, the token offered
// as a subprotocol, the socket dropped with DELETE @connections, pushes made while away, every
// message seen once after the reconnect. WSHUB_PLAYWRIGHT_CORE names playwright-core's
// directory (scripts/test-js.sh sets it); without it this test is skipped, saying why.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFile, mkdtemp } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { deleteConnection, push, range, startHub } from "./helpers.mjs";

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../dist");
const PLAYWRIGHT = process.env.WSHUB_PLAYWRIGHT_CORE;
const CHROMIUM = process.env.WSHUB_CHROMIUM ?? "/usr/bin/chromium";

const PAGE = `<!doctype html><meta charset="utf-8"><title>wshub-client</title>
<script type="module">
import { Hub } from "/dist/index.js";
window.Hub = Hub;
window.ready = true;
</script>`;

/** Serves the page and dist/ (a different origin from the hub's, as an app's page would be). */
async function serveClient(t) {
  const server = createServer(async (req, res) => {
    try {
      if (req.url === "/") {
        res.writeHead(200, { "content-type": "text/html" });
        return res.end(PAGE);
      }
      const m = /^\/dist\/([a-z]+\.js)$/.exec(req.url ?? "");
      if (!m) throw new Error("not found");
      const body = await readFile(path.join(dist, m[1]));
      res.writeHead(200, { "content-type": "text/javascript" });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  return `http://127.0.0.1:${server.address().port}`;
}

test("headless Chromium: subprotocol token, socket dropped, pushes while away, each once after the reconnect (issue 12)", { skip: PLAYWRIGHT ? false : "WSHUB_PLAYWRIGHT_CORE is not set (scripts/test-js.sh sets it)" }, async (t) => {
  const { chromium } = createRequire(import.meta.url)(PLAYWRIGHT);
  const hub = await startHub(t);
  const origin = await serveClient(t);
  const profile = await mkdtemp(path.join(os.tmpdir(), "wshub-client-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  t.after(() => context.close());
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(15_000);
  await page.goto(origin + "/");
  await page.waitForFunction(() => window.ready === true);

  // In the page: a client whose token function holds reconnects while window.gate is set.
  const first = await page.evaluate(async (url) => {
    window.messages = [];
    window.states = [];
    window.gate = null;
    const hub = new window.Hub(url, {
      token: async () => {
        if (window.gate) await window.gate.promise;
        return "hello";
      },
      reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    });
    window.hub = hub;
    hub.on("state", (s) => window.states.push(s));
    hub.on("message", (m) => window.messages.push(m));
    hub.subscribe("browser");
    while (hub.state !== "connected") await new Promise((r) => setTimeout(r, 10));
    for (;;) {
      const me = await hub.request({ action: "whoami" });
      if (me.topics.includes("browser")) return me;
    }
  }, hub.ws);
  assert.equal(first.userId, "anonymous");

  await push(hub, { topic: "browser", data: 0 });
  await page.waitForFunction(() => window.messages.length === 1);
  await page.evaluate(() => {
    let resolve;
    window.gate = { promise: new Promise((r) => (resolve = r)), resolve };
  });
  await deleteConnection(hub, first.connectionId);
  await page.waitForFunction(() => window.hub.state !== "connected");
  for (let i = 1; i <= 20; i++) await push(hub, { topic: "browser", data: i });
  await page.evaluate(() => window.gate.resolve());
  await page.waitForFunction(() => window.messages.length >= 21);
  await page.waitForTimeout(300); // a late duplicate would show here
  const seen = await page.evaluate(() => ({ data: window.messages.map((m) => m.data), states: window.states }));
  assert.deepEqual(seen.data, range(0, 20));
  assert.deepEqual(seen.states, ["connected", "disconnected", "connecting", "connected"]);
  const second = await page.evaluate(() => window.hub.request({ action: "whoami" }));
  assert.notEqual(second.connectionId, first.connectionId);
  await page.evaluate(() => window.hub.close());
});
