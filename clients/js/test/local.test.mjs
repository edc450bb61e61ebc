// Integration tests: the client (with Node's global WebSocket) against the real local hub,
// `wshub-local`, started per test on a free port (see helpers.mjs for the binary's path).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Hub } from "../dist/index.js";
import { away, client, connected, dataOf, deleteConnection, push, range, startHub, subscribed, until } from "./helpers.mjs";

test("reconnect after DELETE @connections: a new connection, the subscription back", async (t) => {
  const hub = await startHub(t);
  const c = client(hub);
  t.after(() => c.hub.close());
  const first = await connected(c);
  await subscribed(c, "room");
  await deleteConnection(hub, first.connectionId);
  await until(() => c.states.at(-1) === "connected" && c.states.includes("disconnected"), 10_000, "reconnected");
  assert.deepEqual(c.states, ["connected", "disconnected", "connecting", "connected"]);
  const second = await c.hub.request({ action: "whoami" });
  assert.notEqual(second.connectionId, first.connectionId);
  await until(async () => (await c.hub.request({ action: "whoami" })).topics.includes("room"), 10_000, "resubscribed");
  await push(hub, { topic: "room", data: "after" });
  await until(() => dataOf(c.messages, "room").includes("after"), 10_000, "the push after the reconnect");
});

test("recovery: every push made while away arrives after the reconnect, in order, once (issue 12)", async (t) => {
  const hub = await startHub(t);
  const c = client(hub);
  t.after(() => c.hub.close());
  await connected(c);
  await subscribed(c, "news");
  await push(hub, { topic: "news", data: 0 });
  await until(() => c.messages.length === 1, 10_000, "the first push");
  const back = await away(hub, c);
  for (let i = 1; i <= 50; i++) await push(hub, { topic: "news", data: i });
  back();
  await until(() => c.messages.length >= 51, 15_000, "51 messages");
  await push(hub, { topic: "news", data: 51 });
  await until(() => c.messages.length >= 52, 10_000, "the live push after recovery");
  assert.deepEqual(dataOf(c.messages, "news"), range(0, 51));
  assert.deepEqual(c.messages.map((m) => m.seq), range(1, 52));
  assert.deepEqual(c.gaps, []);
  assert.deepEqual(c.hub.positions().news.seq, 52);
});

test("recovery of the user's own stream user:<id> without subscribing (issue 12)", async (t) => {
  const hub = await startHub(t);
  const c = client(hub);
  t.after(() => c.hub.close());
  const { userId } = await connected(c);
  await push(hub, { userId, data: "first" });
  await until(() => c.messages.length === 1, 10_000, "the first user push");
  assert.equal(c.messages[0].topic, `user:${userId}`);
  const back = await away(hub, c);
  for (let i = 1; i <= 5; i++) await push(hub, { userId, data: i });
  back();
  await until(() => c.messages.length >= 6, 15_000, "the user pushes made while away");
  assert.deepEqual(c.messages.map((m) => m.data), ["first", 1, 2, 3, 4, 5]);
});

test("the index-lag history read at the head of a stream leaves the connection alone (issue 12)", async (t) => {
  const hub = await startHub(t);
  const c = client(hub, { lagFetchMs: 200 });
  t.after(() => c.hub.close());
  const before = await connected(c);
  await subscribed(c, "head");
  await push(hub, { topic: "head", data: 1 });
  await until(() => c.messages.length === 1, 10_000, "the push");
  await new Promise((r) => setTimeout(r, 600)); // the read after subscribing, at seq 1 of 1
  const after = await c.hub.request({ action: "whoami" });
  assert.equal(after.connectionId, before.connectionId);
  assert.deepEqual(c.states, ["connected"]);
  assert.deepEqual(dataOf(c.messages, "head"), [1]);
  assert.deepEqual(c.hub.positions().head, { seq: 1, epoch: c.messages[0].epoch });
});

test("roll-over before --max-duration-seconds: several in a row, no gap, no duplicate, never disconnected", async (t) => {
  const hub = await startHub(t, { args: ["--max-duration-seconds", "3"] });
  let sockets = 0;
  const Counting = class extends WebSocket {
    constructor(...args) {
      super(...args);
      sockets++;
    }
  };
  const c = client(hub, { webSocket: Counting, maxConnectionSeconds: 3, rolloverMarginSeconds: 1 });
  t.after(() => c.hub.close());
  await connected(c);
  await subscribed(c, "ticker");
  const started = Date.now();
  let n = 0;
  while (Date.now() - started < 7_500) {
    await push(hub, { topic: "ticker", data: ++n });
    await new Promise((r) => setTimeout(r, 25));
  }
  await until(() => c.messages.length >= n, 10_000, `${n} messages`);
  await new Promise((r) => setTimeout(r, 300)); // a late duplicate would show here
  assert.ok(sockets >= 4, `at least three roll-overs (${sockets} sockets)`);
  assert.deepEqual(dataOf(c.messages, "ticker"), range(1, n));
  assert.deepEqual(c.gaps, []);
  assert.deepEqual(c.states, ["connected"], "a roll-over is invisible to the app");
});

test("keepalive holds a socket open past --idle-timeout-seconds", async (t) => {
  const hub = await startHub(t, { args: ["--idle-timeout-seconds", "2"] });
  const c = client(hub, { keepaliveSeconds: 1 });
  t.after(() => c.hub.close());
  const before = await connected(c);
  await new Promise((r) => setTimeout(r, 5_000));
  const after = await c.hub.request({ action: "whoami" });
  assert.equal(after.connectionId, before.connectionId);
  assert.deepEqual(c.states, ["connected"]);
});

test("with recording off (HISTORY_TTL_SECONDS=0) pushes made while away are a gap event", async (t) => {
  const hub = await startHub(t, { env: { HISTORY_TTL_SECONDS: "0" } });
  const c = client(hub);
  t.after(() => c.hub.close());
  await connected(c);
  await subscribed(c, "volatile");
  await push(hub, { topic: "volatile", data: "before" });
  await until(() => c.messages.length === 1, 10_000, "the first push");
  const back = await away(hub, c);
  await push(hub, { topic: "volatile", data: "lost" });
  back();
  await until(() => c.gaps.length === 1, 10_000, "a gap event");
  assert.equal(c.gaps[0].topic, "volatile");
  await push(hub, { topic: "volatile", data: "live" });
  await until(() => dataOf(c.messages, "volatile").includes("live"), 10_000, "live delivery after the gap");
});

test("a refused token goes to closed and stops retrying", async (t) => {
  const hub = await startHub(t);
  for (const tokenIn of ["protocol", "query"]) {
    const details = [];
    const c = new Hub(hub.ws, { token: "wrong", tokenIn, reconnect: { minDelayMs: 20, maxDelayMs: 50 } });
    c.on("state", (s, d) => details.push([s, d]));
    await until(() => c.state === "closed", 10_000, `closed (${tokenIn})`);
    const [, detail] = details.at(-1);
    assert.equal(detail.reason, "refused");
    assert.ok([401, 403].includes(detail.status), `status ${detail.status}`);
    assert.ok(!details.some(([s]) => s === "connected"));
    await assert.rejects(c.send("x", 1), { code: "closed" });
  }
});

test("sends while disconnected are queued, then sent in order after the reconnect", async (t) => {
  const hub = await startHub(t);
  const listener = client(hub);
  const sender = client(hub, { sendQueueLimit: 5 });
  t.after(() => {
    listener.hub.close();
    sender.hub.close();
  });
  await connected(listener);
  await subscribed(listener, "chat");
  await connected(sender);
  const back = await away(hub, sender);
  const sends = range(1, 5).map((i) => sender.hub.send("chat", i));
  const overflow = await sender.hub.send("chat", 6).then(
    () => "sent",
    (e) => e.code,
  );
  assert.equal(overflow, "queue_full");
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(listener.messages, [], "nothing goes out while disconnected");
  back();
  const replies = await Promise.all(sends);
  assert.deepEqual(replies.map((r) => [r.action, r.recipients]), range(1, 5).map(() => ["sent", 1]));
  await until(() => listener.messages.length === 5, 10_000, "5 messages");
  assert.deepEqual(dataOf(listener.messages, "chat"), range(1, 5));
});
