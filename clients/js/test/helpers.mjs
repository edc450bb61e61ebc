// Shared by the integration tests: start wshub-local on a free port, push, drop a connection,
// and a client whose reconnects can be held while a test pushes.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { Hub } from "../dist/index.js";

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const BIN =
  process.env.WSHUB_LOCAL_BIN ??
  path.join(process.env.CARGO_TARGET_DIR ? path.resolve(repo, process.env.CARGO_TARGET_DIR) : path.join(repo, "target"), "debug/wshub-local");

if (!existsSync(BIN)) throw new Error(`${BIN} is missing: cargo build --bin wshub-local (or set WSHUB_LOCAL_BIN)`);

/** Starts wshub-local on a free port with the out-of-the-box configuration (token `hello`). */
export async function startHub(t, { args = [], env = {} } = {}) {
  const clean = { ...process.env };
  for (const name of ["AUTH_TOKENS", "JWT_SECRET", "JWT_JWKS_URL", "CONNECTIONS_TABLE", "AWS_ENDPOINT_URL_DYNAMODB"]) delete clean[name];
  const child = spawn(BIN, ["--port", "0", ...args], {
    env: { RUST_LOG: "warn", ...clean, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const ws = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = /ready on (ws:\/\/[^\s,]+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`wshub-local exited with ${code}: ${stderr}`)));
    setTimeout(() => reject(new Error(`wshub-local not ready: ${stderr}`)), 30_000).unref();
  });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  t.after(async () => {
    child.kill("SIGTERM");
    await exited;
  });
  return { ws, http: "http" + ws.slice(2), log: () => stderr };
}

/** What `/_local/sqs` answers for one SQS message body. */
export async function push(hub, body) {
  const r = await fetch(`${hub.http}/_local/sqs`, { method: "POST", body: JSON.stringify(body) });
  const answer = await r.json();
  assert.equal(r.status, 200);
  assert.deepEqual(answer.batchItemFailures, [], `push ${JSON.stringify(body)} failed`);
}

export async function deleteConnection(hub, id) {
  const r = await fetch(`${hub.http}/@connections/${encodeURIComponent(id)}`, { method: "DELETE" });
  assert.equal(r.status, 204);
}

export async function until(cond, ms = 10_000, what = "condition") {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > ms) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function deferred() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * A client whose reconnects wait at a gate while `away` is set: the token function (called on
 * every connect) holds them, so a test can push while the client is certainly disconnected.
 */
export function client(hub, options = {}) {
  const record = { states: [], gaps: [], messages: [], gate: null };
  const c = new Hub(hub.ws, {
    token: async () => {
      if (record.gate) await record.gate.promise;
      return "hello";
    },
    reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    ...options,
  });
  c.on("state", (s) => record.states.push(s));
  c.on("gap", (g) => record.gaps.push(g));
  c.on("message", (m) => record.messages.push(m));
  record.hub = c;
  return record;
}

export async function connected(c) {
  await until(() => c.hub.state === "connected", 10_000, "connected");
  return c.hub.request({ action: "whoami" });
}

/** Subscribes and waits until the hub has the subscription (a socket's frames run in order). */
export async function subscribed(c, topic, handler) {
  const sub = c.hub.subscribe(topic, handler);
  await until(async () => (await c.hub.request({ action: "whoami" })).topics.includes(topic), 10_000, `subscribed to ${topic}`);
  return sub;
}

/** Drops the client's socket with DELETE @connections and holds its reconnect at the gate. */
export async function away(hub, c) {
  const { connectionId } = await c.hub.request({ action: "whoami" });
  c.gate = deferred();
  await deleteConnection(hub, connectionId);
  await until(() => c.hub.state !== "connected", 10_000, "disconnected");
  return () => {
    const gate = c.gate;
    c.gate = null;
    gate.resolve();
  };
}

export const dataOf = (messages, topic) => messages.filter((m) => m.topic === topic).map((m) => m.data);
export const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
