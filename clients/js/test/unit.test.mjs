// Unit tests: the client against a fake WebSocket and an in-memory hub (test/fake.mjs).
import { after, test, mock } from "node:test";
import assert from "node:assert/strict";
import { Hub, WshubError } from "../dist/index.js";
import { FakeHub, flush, settle } from "./fake.mjs";

/** Waits (on real timers) until `cond()` holds; fails after `ms`. */
async function until(cond, ms = 3000, what = "condition") {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Every client made here; closed at the end, so a failed test leaves no timer running. */
const made = [];
after(() => made.forEach((h) => h.close()));

function client(fake, options = {}) {
  const hub = new Hub("wss://example.test/prod", { token: "t0k", webSocket: fake.WebSocket, ...options });
  const states = [];
  const gaps = [];
  const messages = [];
  hub.on("state", (s) => states.push(s));
  hub.on("gap", (g) => gaps.push(g));
  hub.on("message", (m) => messages.push(m));
  made.push(hub);
  return { hub, states, gaps, messages };
}

const seqs = (messages, topic) => messages.filter((m) => m.topic === topic).map((m) => m.seq);

test("connects with the token as the second subprotocol, or in the query when asked", async () => {
  const fake = new FakeHub();
  const { hub, states } = client(fake);
  await until(() => hub.state === "connected");
  assert.deepEqual(fake.sockets[0].protocols, ["websocket", "t0k"]);
  assert.equal(fake.sockets[0].url, "wss://example.test/prod");
  assert.deepEqual(states, ["connected"]);
  hub.close();
  assert.deepEqual(states, ["connected", "closed"]);

  const fake2 = new FakeHub();
  const q = new Hub("wss://example.test/prod?x=1", { token: "a b&c", tokenIn: "query", webSocket: fake2.WebSocket });
  await until(() => q.state === "connected");
  assert.equal(fake2.sockets[0].url, "wss://example.test/prod?x=1&token=a%20b%26c");
  assert.equal(fake2.sockets[0].protocols, undefined);
  q.close();
});

test("state machine: a dropped socket goes disconnected, reconnects, and close() ends it", async () => {
  const fake = new FakeHub();
  const { hub, states } = client(fake, { reconnect: { minDelayMs: 1, maxDelayMs: 2 } });
  await until(() => hub.state === "connected");
  fake.sockets[0].drop();
  assert.equal(hub.state, "disconnected");
  await until(() => fake.sockets.length === 2 && hub.state === "connected");
  assert.deepEqual(states, ["connected", "disconnected", "connecting", "connected"]);
  hub.close();
  assert.equal(hub.state, "closed");
  await settle();
  assert.equal(fake.sockets.length, 2, "no reconnect after close()");
  assert.throws(() => hub.subscribe("x"), WshubError);
  await assert.rejects(hub.send("x", 1), { code: "closed" });
});

test("reconnect back-off: full jitter below a cap doubling from minDelayMs to maxDelayMs", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"] });
  t.mock.method(Math, "random", () => 0.5);
  const fake = new FakeHub({ autoAccept: false });
  const hub = new Hub("wss://h/prod", { token: "t", webSocket: fake.WebSocket, reconnect: { minDelayMs: 100, maxDelayMs: 500 } });
  t.mock.timers.tick(0);
  await settle();
  // Each attempt fails before opening; the waits are 0.5 x (100, 200, 400, 500, 500).
  const waits = [];
  for (let i = 0; i < 5; i++) {
    const before = fake.sockets.length;
    fake.last().drop();
    let waited = 0;
    while (fake.sockets.length === before) {
      t.mock.timers.tick(1);
      waited += 1;
      await settle(2);
      assert.ok(waited < 10_000);
    }
    waits.push(waited);
  }
  assert.deepEqual(waits, [50, 100, 200, 250, 250]);
  hub.close();
});

test("a refused upgrade with a string token goes to closed and stops retrying", async () => {
  const fake = new FakeHub();
  fake.refuseWith = 401;
  const details = [];
  const hub = new Hub("wss://h/prod", { token: "bad", webSocket: fake.WebSocket, reconnect: { minDelayMs: 1, maxDelayMs: 1 } });
  hub.on("state", (s, d) => details.push([s, d]));
  const queued = hub.send("t", 1).then(() => "sent", (e) => e.code);
  await until(() => hub.state === "closed");
  assert.equal(await queued, "closed");
  await settle();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(fake.sockets.length, 1);
  assert.deepEqual(details.at(-1), ["closed", { reason: "refused", status: 401 }]);
});

test("a refused upgrade with a token function retries with the new token; the same token twice closes", async () => {
  const fake = new FakeHub();
  fake.refuseWith = 403;
  const tokens = ["old", "new"];
  let calls = 0;
  const hub = new Hub("wss://h/prod", {
    token: async () => {
      calls++;
      const t = tokens.shift() ?? "new";
      if (t === "new") fake.refuseWith = null;
      return t;
    },
    webSocket: fake.WebSocket,
    reconnect: { minDelayMs: 1, maxDelayMs: 1 },
  });
  await until(() => hub.state === "connected");
  assert.deepEqual(fake.sockets.map((s) => s.protocols[1]), ["old", "new"]);
  hub.close();

  const fake2 = new FakeHub();
  fake2.refuseWith = 403;
  const same = new Hub("wss://h/prod", { token: async () => "same", webSocket: fake2.WebSocket, reconnect: { minDelayMs: 1, maxDelayMs: 1 } });
  await until(() => same.state === "closed");
  assert.equal(fake2.sockets.length, 2, "tried once more with the function's token, then stopped");
  assert.equal(calls, 2);
});

test("per-stream seq order, each once: duplicates dropped, reordering repaired", async () => {
  const fake = new FakeHub();
  const { hub, messages } = client(fake, { gapWaitMs: 10_000, lagFetchMs: 10_000 });
  const got = [];
  hub.subscribe("news", (m) => got.push(m.seq));
  await until(() => fake.sent("subscribe").length === 1 && fake.sockets[0].topics.has("news"));
  await settle();
  const sock = fake.sockets[0];
  const frames = [1, 2, 3, 4, 5].map((n) => fake.publish("news", n, { to: [] }));
  for (const i of [0, 1, 1, 3, 2, 0, 4, 4]) sock.receive(frames[i]);
  assert.deepEqual(got, [1, 2, 3, 4, 5]);
  assert.deepEqual(seqs(messages, "news"), [1, 2, 3, 4, 5]);
  assert.deepEqual(messages[0], { topic: "news", data: 1, id: "m-news-1", seq: 1, epoch: "e1" });
  assert.deepEqual(hub.positions(), { news: { seq: 5, epoch: "e1" } });
  hub.close();
});

test("a live seq skip waits briefly, then reads the missing range with history", async () => {
  const fake = new FakeHub();
  const { hub, messages, gaps } = client(fake, { gapWaitMs: 20, lagFetchMs: 10_000 });
  hub.subscribe("news");
  await until(() => fake.sockets[0]?.topics.has("news"));
  await settle();
  fake.publish("news", "a");
  fake.publish("news", "b", { to: [] }); // lost on the way
  fake.publish("news", "c");
  assert.deepEqual(seqs(messages, "news"), [1]);
  await until(() => seqs(messages, "news").length === 3);
  assert.deepEqual(seqs(messages, "news"), [1, 2, 3]);
  assert.deepEqual(fake.sent("history").map((f) => f.since), [{ seq: 1, epoch: "e1" }]);
  assert.deepEqual(gaps, []);
  hub.close();
});

test("one history read shortly after each subscribe catches what the index lag hid", async () => {
  const fake = new FakeHub();
  const { hub, messages } = client(fake, { lagFetchMs: 20 });
  hub.subscribe("news");
  await until(() => fake.sockets[0]?.topics.has("news"));
  await settle();
  fake.publish("news", "hidden", { to: [] }); // reached the stream, not this socket
  await until(() => messages.length === 1);
  assert.equal(messages[0].data, "hidden");
  assert.equal(fake.sent("history").length, 1);
  hub.close();
});

test("after a reconnect: subscribe with since, missed messages applied and paged, in order, once", async () => {
  const fake = new FakeHub({ pageSize: 3 });
  const { hub, messages, gaps } = client(fake, { reconnect: { minDelayMs: 1, maxDelayMs: 1 }, lagFetchMs: 10_000 });
  hub.subscribe("news");
  await until(() => fake.sockets[0]?.topics.has("news"));
  await settle();
  fake.publish("news", 1);
  fake.publish("news", 2);
  fake.sockets[0].drop();
  for (let i = 3; i <= 12; i++) fake.publish("news", i);
  await until(() => messages.length === 12);
  assert.deepEqual(seqs(messages, "news"), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const subs = fake.sent("subscribe");
  assert.equal(subs.length, 2);
  assert.equal(subs[0].since, undefined);
  assert.deepEqual(subs[1].since, { seq: 2, epoch: "e1" });
  assert.deepEqual(fake.sent("history").map((f) => f.since.seq), [5, 8, 11]);
  assert.deepEqual(gaps, []);
  hub.close();
});

test("recovered:false is a gap event, then live delivery goes on", async () => {
  const fake = new FakeHub({ historyKept: 2 });
  const { hub, messages, gaps } = client(fake, { reconnect: { minDelayMs: 1, maxDelayMs: 1 }, lagFetchMs: 10_000 });
  hub.subscribe("news");
  await until(() => fake.sockets[0]?.topics.has("news"));
  await settle();
  fake.publish("news", 1);
  fake.sockets[0].drop();
  for (let i = 2; i <= 6; i++) fake.publish("news", i); // only 5 and 6 are kept
  await until(() => hub.state === "connected" && gaps.length === 1);
  await settle();
  assert.deepEqual(gaps, [{ topic: "news", reason: "expired", from: { seq: 1, epoch: "e1" }, epoch: "e1" }]);
  fake.publish("news", 7);
  await until(() => messages.length === 4);
  assert.deepEqual(seqs(messages, "news"), [1, 5, 6, 7]);
  hub.close();
});

test("a new epoch seen live is a gap; the stream goes on from the new epoch", async () => {
  const fake = new FakeHub();
  const { hub, messages, gaps } = client(fake, { lagFetchMs: 10_000, gapWaitMs: 10_000 });
  hub.subscribe("news");
  await until(() => fake.sockets[0]?.topics.has("news"));
  await settle();
  fake.publish("news", 1);
  fake.reset("news");
  fake.publish("news", "x");
  fake.publish("news", "y");
  assert.equal(gaps.length, 1);
  assert.equal(gaps[0].epoch, "e2");
  assert.equal(gaps[0].reason, "epoch");
  assert.deepEqual(messages.map((m) => [m.seq, m.epoch]), [[1, "e1"], [1, "e2"], [2, "e2"]]);
  hub.close();
});

test("positions() round-trips: a new Hub resumes after them", async () => {
  const fake = new FakeHub();
  fake.publish("news", 1);
  fake.publish("news", 2);
  fake.publish("news", 3);
  const { hub, messages } = client(fake, { positions: { news: { seq: 1, epoch: "e1" }, bad: { seq: "x" } }, lagFetchMs: 10_000 });
  assert.deepEqual(hub.positions(), { news: { seq: 1, epoch: "e1" } });
  hub.subscribe("news");
  await until(() => messages.length === 2);
  assert.deepEqual(fake.sent("subscribe")[0].since, { seq: 1, epoch: "e1" });
  assert.deepEqual(seqs(messages, "news"), [2, 3]);
  assert.deepEqual(hub.positions(), { news: { seq: 3, epoch: "e1" } });
  hub.close();
});

test("the user's own stream is followed without subscribing and read with history after a reconnect", async () => {
  const fake = new FakeHub();
  const { hub, messages } = client(fake, { reconnect: { minDelayMs: 1, maxDelayMs: 1 } });
  await until(() => hub.state === "connected");
  fake.publish("user:u", "hello");
  fake.sockets[0].drop();
  fake.publish("user:u", "while away");
  await until(() => messages.length === 2);
  assert.deepEqual(messages.map((m) => m.data), ["hello", "while away"]);
  assert.deepEqual(fake.sent("history")[0].since, { seq: 1, epoch: "e1" });
  assert.equal(fake.sent("subscribe").length, 0);
  hub.close();
});

test("request matches replies by id, whatever their order; error frames reject with the code", async () => {
  const fake = new FakeHub();
  const held = [];
  fake.intercept = (sock, frame) => {
    if (frame.action !== "whoami" && frame.action !== "ping") return false;
    held.push([sock, frame]);
    return true;
  };
  const { hub } = client(fake);
  await until(() => hub.state === "connected");
  const a = hub.request({ action: "whoami", id: "mine" });
  const b = hub.request({ action: "ping" });
  await until(() => held.length === 2);
  assert.notEqual(held[0][1].id, held[1][1].id);
  fake.answer(...held[1]);
  fake.answer(...held[0]);
  assert.equal((await a).action, "whoami");
  assert.equal((await b).action, "pong");
  await assert.rejects(hub.send("forbidden", 1), (e) => e instanceof WshubError && e.code === "forbidden_topic");
  const sent = await hub.send("news", { text: "hi" });
  assert.equal(sent.action, "sent");
  hub.close();
});

test("sends while disconnected are queued and sent after the reconnect, in order", async () => {
  const fake = new FakeHub();
  const { hub } = client(fake, { reconnect: { minDelayMs: 1, maxDelayMs: 1 } });
  await until(() => hub.state === "connected");
  fake.autoAccept = false;
  fake.sockets[0].drop();
  const sends = [hub.send("a", 1), hub.send("a", 2), hub.send("a", 3)];
  await until(() => fake.sockets.length === 2);
  assert.equal(fake.sent("sendmessage").length, 0);
  fake.sockets[1].accept();
  const replies = await Promise.all(sends);
  assert.deepEqual(replies.map((r) => r.action), ["sent", "sent", "sent"]);
  assert.deepEqual(fake.sent("sendmessage").map((f) => f.data), [1, 2, 3]);
  hub.close();
});

test("the send queue is bounded and a queued send is rejected after its timeout, never dropped", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"] });
  const fake = new FakeHub({ autoAccept: false });
  const hub = new Hub("wss://h/prod", { token: "t", webSocket: fake.WebSocket, sendQueueLimit: 2, sendTimeoutSeconds: 5 });
  const results = [];
  const track = (p) => p.then(() => "resolved", (e) => e.code);
  const a = track(hub.send("t", 1));
  const b = track(hub.send("t", 2));
  const c = track(hub.send("t", 3));
  assert.equal(await c, "queue_full");
  t.mock.timers.tick(4999);
  await flush();
  results.push(await Promise.race([a, Promise.resolve("pending")]));
  assert.deepEqual(results, ["pending"]);
  t.mock.timers.tick(1);
  assert.equal(await a, "timeout");
  assert.equal(await b, "timeout");
  hub.close();
});

test("a request in flight when the socket drops is rejected with connection_lost", async () => {
  const fake = new FakeHub();
  fake.intercept = (sock, frame) => frame.action === "sendmessage";
  const { hub } = client(fake, { reconnect: { minDelayMs: 1, maxDelayMs: 1 } });
  await until(() => hub.state === "connected");
  const p = hub.send("t", 1);
  await settle();
  fake.sockets[0].drop();
  await assert.rejects(p, { code: "connection_lost" });
  hub.close();
});

test("keepalive: a ping after keepaliveSeconds of silence; no pong in time reconnects", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"] });
  const fake = new FakeHub({ autoAccept: false });
  let answerPings = true;
  fake.intercept = (sock, frame) => frame.action === "ping" && !answerPings;
  const hub = new Hub("wss://h/prod", { token: "t", webSocket: fake.WebSocket, keepaliveSeconds: 60, pongTimeoutSeconds: 5, reconnect: { minDelayMs: 1, maxDelayMs: 1 } });
  t.mock.timers.tick(0);
  await settle();
  fake.sockets[0].accept();
  await settle();
  t.mock.timers.tick(59_999);
  assert.equal(fake.sent("ping").length, 0);
  t.mock.timers.tick(1);
  assert.equal(fake.sent("ping").length, 1);
  // A send re-arms the timer: the next ping is 60 s after it.
  t.mock.timers.tick(30_000);
  void hub.send("t", 1);
  await settle();
  t.mock.timers.tick(59_999);
  assert.equal(fake.sent("ping").length, 1);
  answerPings = false;
  t.mock.timers.tick(1);
  assert.equal(fake.sent("ping").length, 2);
  t.mock.timers.tick(5000);
  await settle();
  assert.equal(hub.state, "disconnected");
  t.mock.timers.tick(1);
  await settle();
  assert.equal(fake.sockets.length, 2);
  hub.close();
});

test("roll-over before the cap: a second socket resubscribes from the positions, then the old one closes; no gap, no duplicate", async () => {
  const fake = new FakeHub();
  const { hub, messages, gaps, states } = client(fake, { maxConnectionSeconds: 0.3, rolloverMarginSeconds: 0.1, lagFetchMs: 10_000 });
  hub.subscribe("news");
  await until(() => fake.sockets[0]?.topics.has("news"));
  let n = 0;
  const publisher = setInterval(() => fake.publish("news", ++n), 5);
  await until(() => fake.sockets.length >= 4, 5000, "three roll-overs");
  clearInterval(publisher);
  await until(() => seqs(messages, "news").length === n, 3000, "every message");
  assert.deepEqual(seqs(messages, "news"), Array.from({ length: n }, (_, i) => i + 1));
  assert.deepEqual(gaps, []);
  assert.deepEqual(states, ["connected"], "a roll-over is invisible to the app");
  const since = fake.sent("subscribe").slice(1).map((f) => f.since);
  assert.ok(since.every((s) => s && s.epoch === "e1"), "each new socket resubscribes with since");
  await until(() => fake.open.length === 1, 7000, "old sockets closed");
  hub.close();
});

test("a throwing listener does not stop delivery to the others; its error goes to the error listeners", async () => {
  const fake = new FakeHub();
  const { hub, messages } = client(fake, { lagFetchMs: 10_000 });
  const errors = [];
  hub.on("error", (e) => errors.push(e.error.message));
  hub.subscribe("news", () => {
    throw new Error("app bug");
  });
  await until(() => fake.sockets[0]?.topics.has("news"));
  await settle();
  fake.publish("news", 1);
  fake.publish("news", 2);
  assert.equal(messages.length, 2);
  assert.deepEqual(errors, ["app bug", "app bug"]);
  hub.close();
});

test("seq-less messages (broadcasts) are delivered, their duplicates by id dropped", async () => {
  const fake = new FakeHub();
  const { hub, messages } = client(fake);
  await until(() => hub.state === "connected");
  fake.sockets[0].receive({ action: "message", data: "b", id: "x1" });
  fake.sockets[0].receive({ action: "message", data: "b", id: "x1" });
  fake.sockets[0].receive({ action: "message", data: "c", id: "x2" });
  assert.deepEqual(messages.map((m) => m.data), ["b", "c"]);
  hub.close();
});

test("unsubscribe stops delivery to the handler and tells the hub", async () => {
  const fake = new FakeHub();
  const { hub } = client(fake, { lagFetchMs: 10_000 });
  const got = [];
  const sub = hub.subscribe("news", (m) => got.push(m.data));
  await until(() => fake.sockets[0]?.topics.has("news"));
  await settle();
  fake.publish("news", 1);
  sub.unsubscribe();
  await until(() => !fake.sockets[0].topics.has("news"));
  fake.sockets[0].topics.add("news");
  fake.publish("news", 2);
  assert.deepEqual(got, [1]);
  assert.deepEqual(hub.positions(), {});
  hub.close();
});

mock.reset();

test("a fresh subscribe delivers a publication that raced it (arrived live, at or before the reply's seq)", async () => {
  const fake = new FakeHub();
  fake.intercept = (sock, frame) => {
    if (frame.action !== "subscribe") return false;
    sock.topics.add(frame.topic);
    fake.publish(frame.topic, "raced"); // after the subscription, before the reply reads seq
    fake.answer(sock, frame);
    return true;
  };
  const { hub, messages } = client(fake, { lagFetchMs: 10_000 });
  hub.subscribe("news");
  await until(() => messages.length === 1);
  assert.deepEqual(messages.map((m) => [m.data, m.seq]), [["raced", 1]]);
  fake.intercept = null;
  fake.publish("news", "next");
  assert.deepEqual(seqs(messages, "news"), [1, 2]);
  hub.close();
});

test("a subscribe the hub refuses is an error event; one that fails with internal is retried", async () => {
  const fake = new FakeHub();
  let failures = 1;
  fake.intercept = (sock, frame) => {
    if (frame.action !== "subscribe") return false;
    if (frame.topic === "secret") {
      sock.receive({ action: "error", code: "forbidden_topic", message: "no", id: frame.id });
      return true;
    }
    if (failures-- > 0) {
      sock.receive({ action: "error", code: "internal", message: "try again", id: frame.id });
      return true;
    }
    return false;
  };
  const { hub } = client(fake, { lagFetchMs: 10_000, reconnect: { minDelayMs: 1, maxDelayMs: 1 } });
  const errors = [];
  hub.on("error", (e) => errors.push([e.topic, e.error.code]));
  hub.subscribe("secret");
  hub.subscribe("news");
  await until(() => fake.sockets[0]?.topics.has("news"));
  assert.deepEqual(errors, [["secret", "forbidden_topic"]]);
  assert.equal(fake.sent("subscribe").filter((f) => f.topic === "news").length, 2);
  hub.close();
});

test("recording off: no position, no gap while connected; a resubscribe after a reconnect is a gap, a roll-over is not", async () => {
  const fake = new FakeHub({ recordingOff: true });
  const { hub, messages, gaps } = client(fake, { lagFetchMs: 10, reconnect: { minDelayMs: 1, maxDelayMs: 1 } });
  hub.subscribe("volatile");
  await until(() => fake.sockets[0]?.topics.has("volatile"));
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(gaps, []);
  fake.publish("volatile", "live");
  fake.sockets[0].drop();
  fake.publish("volatile", "lost");
  await until(() => gaps.length === 1);
  assert.equal(gaps[0].topic, "volatile");
  await until(() => fake.open.length === 1 && fake.open[0].topics.has("volatile"));
  fake.publish("volatile", "after");
  assert.deepEqual(messages.map((m) => m.data), ["live", "after"]);
  assert.deepEqual(hub.positions(), {});
  hub.close();

  const fake2 = new FakeHub({ recordingOff: true });
  const rolling = client(fake2, { maxConnectionSeconds: 0.2, rolloverMarginSeconds: 0.1 });
  rolling.hub.subscribe("volatile");
  await until(() => fake2.sockets.length >= 3, 5000, "two roll-overs");
  await until(() => fake2.open.length === 1 && fake2.open[0].topics.has("volatile"));
  assert.deepEqual(rolling.gaps, []);
  rolling.hub.close();
});

test("the client's own message (not echoed to its sender) is passed over by the seq in the sent reply, not read back", async () => {
  const fake = new FakeHub();
  const { hub, messages, gaps } = client(fake, { lagFetchMs: 10_000, gapWaitMs: 20 });
  hub.subscribe("news");
  await until(() => fake.sockets[0]?.topics.has("news"));
  await settle();
  const sent = await hub.send("news", "mine");
  assert.deepEqual([sent.seq, sent.epoch], [1, "e1"]);
  fake.publish("news", "theirs");
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual(messages.map((m) => [m.data, m.seq]), [["theirs", 2]]);
  assert.equal(fake.sent("history").length, 0);
  assert.deepEqual(gaps, []);
  assert.deepEqual(hub.positions(), { news: { seq: 2, epoch: "e1" } });
  hub.close();
});

test("close() rejects requests in flight with closed and closes the socket with 1000", async () => {
  const fake = new FakeHub();
  fake.intercept = (sock, frame) => frame.action === "sendmessage";
  const { hub } = client(fake);
  await until(() => hub.state === "connected");
  const p = hub.send("t", 1).then(() => "sent", (e) => e.code);
  await settle();
  const closed = new Promise((r) => {
    const sock = fake.sockets[0];
    const orig = sock.close.bind(sock);
    sock.close = (code, reason) => {
      r([code, reason]);
      orig(code, reason);
    };
  });
  hub.close();
  assert.equal(await p, "closed");
  assert.deepEqual(await closed, [1000, "closed"]);
});
