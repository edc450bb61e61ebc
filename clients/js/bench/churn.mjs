// Continuity under churn: a publisher sends numbered messages on one topic at a steady rate
// through /_local/sqs while the hub's maximum connection duration is a few seconds and a killer
// deletes a random subscriber's connection (DELETE @connections) every 1-3 s. Several subscribers
// use wshub-client. Reports, per run: messages lost, duplicates and out-of-order deliveries seen
// by the app, reconnects and roll-overs, and the time from a reconnect to being caught up
// (p50/p99). Usage (scripts/bench-js-churn.sh runs it):
//   node bench/churn.mjs [--messages 2000] [--rate 100] [--subscribers 5] [--max-duration 5]
//                        [--dynamodb-endpoint URL] [--label NAME]
import { parseArgs } from "node:util";
import { Hub } from "../dist/index.js";
import { deleteConnection, startHub } from "../test/helpers.mjs";

/**
 * One publication through /_local/sqs. A batch item failure is retried, as SQS would redeliver
 * the record; the idempotency key keeps a retried publication at its first seq.
 */
async function publish(hub, i) {
  for (let attempt = 1; ; attempt++) {
    const r = await fetch(`${hub.http}/_local/sqs`, {
      method: "POST",
      body: JSON.stringify({ topic: TOPIC, data: i, idempotencyKey: `churn-${i}` }),
    });
    const answer = await r.json().catch(() => ({}));
    if (r.status === 200 && Array.isArray(answer.batchItemFailures) && answer.batchItemFailures.length === 0) return attempt - 1;
    if (attempt >= 5) throw new Error(`publication ${i} failed 5 times: ${r.status} ${JSON.stringify(answer)}`);
    await new Promise((res) => setTimeout(res, 100 * attempt));
  }
}

const { values: o } = parseArgs({
  options: {
    messages: { type: "string", default: "2000" },
    rate: { type: "string", default: "100" },
    subscribers: { type: "string", default: "5" },
    "max-duration": { type: "string", default: "5" },
    "dynamodb-endpoint": { type: "string" },
    label: { type: "string", default: "in-memory store" },
  },
});
const N = Number(o.messages);
const RATE = Number(o.rate);
const SUBS = Number(o.subscribers);
const MAX = Number(o["max-duration"]);
const TOPIC = "churn";

// node:test's `t.after` stands in for the hub's cleanup.
const cleanups = [];
const t = { after: (fn) => cleanups.push(fn) };
const args = ["--max-duration-seconds", String(MAX)];
if (o["dynamodb-endpoint"]) args.push("--dynamodb-endpoint", o["dynamodb-endpoint"]);
const env = o["dynamodb-endpoint"] ? { CONNECTIONS_TABLE: `wshub-churn-${Date.now()}` } : {};
const hub = await startHub(t, { args, env });

let published = 0; // acknowledged by /_local/sqs
const t0 = performance.now();
const gapEvents = [];
const closes = {}; // close code and reason -> count, for the report
const subscribers = [];
for (let i = 0; i < SUBS; i++) {
  let sockets = 0;
  const Counting = class extends WebSocket {
    constructor(...a) {
      super(...a);
      sockets++;
      this.addEventListener("close", (e) => {
        const key = `${e.code} ${e.reason}`.trim();
        closes[key] = (closes[key] ?? 0) + 1;
      });
    }
  };
  const s = { received: [], reconnects: 0, catchups: [], waiting: [], gaps: 0, sockets: () => sockets };
  s.hub = new Hub(hub.ws, {
    token: "hello",
    webSocket: Counting,
    maxConnectionSeconds: MAX,
    rolloverMarginSeconds: Math.min(1, MAX / 4),
    reconnect: { minDelayMs: 100, maxDelayMs: 2000 },
  });
  let wasDown = false;
  s.hub.on("state", (state) => {
    if (state === "disconnected") wasDown = true;
    if (state === "connected" && wasDown) {
      wasDown = false;
      s.reconnects++;
      // Caught up once it has delivered everything published before this moment.
      s.waiting.push({ at: performance.now(), target: published });
    }
  });
  s.hub.on("gap", (g) => {
    s.gaps++;
    gapEvents.push({ ...g, at: Math.round(performance.now() - t0), published });
  });
  s.hub.on("message", (m) => {
    if (m.topic !== TOPIC) return;
    s.received.push(m.data);
    const top = m.data;
    const now = performance.now();
    s.waiting = s.waiting.filter((w) => {
      if (top < w.target) return true;
      s.catchups.push(now - w.at);
      return false;
    });
  });
  s.hub.subscribe(TOPIC);
  subscribers.push(s);
}
for (const s of subscribers) {
  while (s.hub.state !== "connected" || !(await s.hub.request({ action: "whoami" })).topics.includes(TOPIC)) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

let killing = true;
let kills = 0;
const killer = (async () => {
  while (killing) {
    await new Promise((r) => setTimeout(r, 1000 + Math.random() * 2000));
    if (!killing) break;
    const s = subscribers[Math.floor(Math.random() * subscribers.length)];
    if (s.hub.state !== "connected") continue;
    try {
      const { connectionId } = await s.hub.request({ action: "whoami" });
      await deleteConnection(hub, connectionId);
      kills++;
    } catch {
      // The socket went away on its own meanwhile (a roll-over, the cap).
    }
  }
})();

const started = performance.now();
let retries = 0;
for (let i = 1; i <= N; i++) {
  const due = started + (i * 1000) / RATE;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  retries += await publish(hub, i);
  published = i;
}
const publishSeconds = (performance.now() - started) / 1000;
killing = false;
await killer;
const deadline = performance.now() + 30_000;
while (performance.now() < deadline && subscribers.some((s) => new Set(s.received).size < N)) {
  await new Promise((r) => setTimeout(r, 50));
}
await new Promise((r) => setTimeout(r, 500)); // late duplicates would show here

const pct = (xs, p) => {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
};
let lost = 0;
let dups = 0;
let disorder = 0;
let reconnects = 0;
let rollovers = 0;
let gaps = 0;
const catchups = [];
for (const s of subscribers) {
  const unique = new Set(s.received);
  lost += N - [...unique].filter((d) => d >= 1 && d <= N).length;
  dups += s.received.length - unique.size;
  for (let i = 1; i < s.received.length; i++) if (s.received[i] < s.received[i - 1]) disorder++;
  reconnects += s.reconnects;
  rollovers += s.sockets() - 1 - s.reconnects;
  gaps += s.gaps;
  catchups.push(...s.catchups);
  s.hub.close();
}
for (const fn of cleanups) await fn();
if (process.env.CHURN_HUB_LOG) (await import("node:fs")).writeFileSync(process.env.CHURN_HUB_LOG, hub.log());

const result = {
  label: o.label,
  messages: N,
  rate: RATE,
  subscribers: SUBS,
  maxDurationSeconds: MAX,
  publishSeconds: Number(publishSeconds.toFixed(1)),
  kills,
  publishRetries: retries,
  lost,
  duplicates: dups,
  outOfOrder: disorder,
  gaps,
  reconnects,
  rollovers,
  closes,
  gapEvents: gapEvents.slice(0, 5),
  catchUpMs: { n: catchups.length, p50: Math.round(pct(catchups, 50)), p99: Math.round(pct(catchups, 99)), max: Math.round(pct(catchups, 100)) },
};
console.log(JSON.stringify(result));
process.exit(lost === 0 && dups === 0 && disorder === 0 ? 0 : 2);
