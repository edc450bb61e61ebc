// A fake WebSocket and, behind it, a small in-memory hub speaking wshub's protocol (issue 12's
// seq/epoch, subscribe with since, history with paging), so the client's state machine can be
// driven without a server. Tests reach in to drop sockets, withhold pushes or refuse upgrades.

export const flush = () => new Promise((resolve) => setImmediate(resolve));

export async function settle(rounds = 5) {
  for (let i = 0; i < rounds; i++) await flush();
}

export class FakeHub {
  constructor({ autoAccept = true, historyKept = Infinity, pageSize = Infinity, recordingOff = false } = {}) {
    /** Like HISTORY_TTL_SECONDS=0: no seq on messages, every read answers recovered:false. */
    this.recordingOff = recordingOff;
    this.autoAccept = autoAccept;
    this.historyKept = historyKept;
    this.pageSize = pageSize;
    this.sockets = [];
    this.streams = new Map();
    /** Frames every socket received from the client, in order: [socket, frame]. */
    this.log = [];
    /** When set, called with (socket, frame) before the hub answers; return true to not answer. */
    this.intercept = null;
    /** Status to refuse the next upgrades with (e.g. 401), or null. */
    this.refuseWith = null;
    const hub = this;
    this.WebSocket = class FakeWebSocket {
      constructor(url, protocols) {
        this.url = url;
        this.protocols = protocols;
        this.readyState = 0;
        this.topics = new Set();
        this.onopen = this.onmessage = this.onerror = this.onclose = null;
        hub.sockets.push(this);
        if (hub.refuseWith != null) {
          const status = hub.refuseWith;
          setTimeout(() => this.refuse(status), 0);
        } else if (hub.autoAccept) setTimeout(() => this.accept(), 0);
      }
      send(text) {
        if (this.readyState !== 1) throw new Error("not open");
        const frame = JSON.parse(text);
        hub.log.push([this, frame]);
        if (hub.intercept && hub.intercept(this, frame)) return;
        hub.answer(this, frame);
      }
      close(code = 1005, reason = "") {
        if (this.readyState === 3) return;
        this.readyState = 3;
        setTimeout(() => this.onclose?.({ code, reason }), 0);
      }
      // ---- the server's side ----
      accept() {
        if (this.readyState !== 0) return;
        this.readyState = 1;
        this.onopen?.({});
      }
      refuse(status) {
        this.readyState = 3;
        // What the `ws` package reports; browsers and undici give no status.
        this.onerror?.({ message: `Unexpected server response: ${status}` });
        this.onclose?.({ code: 1006, reason: "" });
      }
      /** The connection ends without a close handshake. */
      drop(code = 1006) {
        if (this.readyState === 3) return;
        this.readyState = 3;
        this.onclose?.({ code, reason: "" });
      }
      receive(frame) {
        if (this.readyState === 1) this.onmessage?.({ data: JSON.stringify(frame) });
      }
    };
  }

  get open() {
    return this.sockets.filter((s) => s.readyState === 1);
  }

  last() {
    return this.sockets[this.sockets.length - 1];
  }

  sent(action) {
    return this.log.filter(([, f]) => f.action === action).map(([, f]) => f);
  }

  stream(topic) {
    let s = this.streams.get(topic);
    if (!s) {
      s = { epoch: "e1", seq: 0, kept: [] };
      this.streams.set(topic, s);
    }
    return s;
  }

  /** Publishes on a stream; `to` limits which open sockets get it live (default: subscribers). */
  publish(topic, data, { to } = {}) {
    const s = this.stream(topic);
    if (this.recordingOff) {
      this.unrecorded = (this.unrecorded ?? 0) + 1;
      const frame = { action: "message", topic, data, id: `m-${topic}-u${this.unrecorded}` };
      const targets = to ?? this.open.filter((sock) => sock.topics.has(topic));
      for (const sock of targets) sock.receive(frame);
      return frame;
    }
    s.seq += 1;
    const frame = { action: "message", topic, data, id: `m-${topic}-${s.seq}`, seq: s.seq, epoch: s.epoch };
    s.kept.push(frame);
    while (s.kept.length > this.historyKept) s.kept.shift();
    const targets = to ?? this.open.filter((sock) => sock.topics.has(topic) || topic.startsWith("user:"));
    for (const sock of targets) sock.receive(frame);
    return frame;
  }

  /** The stream's history is lost: a new epoch, seq from 1 again. */
  reset(topic) {
    const s = this.stream(topic);
    s.epoch = `e${Number(s.epoch.slice(1)) + 1}`;
    s.seq = 0;
    s.kept = [];
  }

  read(topic, since, limit) {
    const s = this.stream(topic);
    if (this.recordingOff) return { recovered: false, messages: [], more: false };
    const after = since && since.epoch === s.epoch ? since.seq : 0;
    const oldest = s.kept.length ? s.kept[0].seq : s.seq + 1;
    const recovered = !!since && since.epoch === s.epoch && after + 1 >= oldest;
    const all = s.kept.filter((m) => m.seq > after);
    const n = Math.min(limit ?? 100, this.pageSize);
    return { seq: s.seq, epoch: s.epoch, recovered, messages: all.slice(0, n), more: all.length > n };
  }

  answer(sock, frame) {
    const { id } = frame;
    switch (frame.action) {
      case "ping":
        return sock.receive({ action: "pong", id });
      case "subscribe": {
        sock.topics.add(frame.topic);
        const r = frame.since ? this.read(frame.topic, frame.since, 100) : { ...this.read(frame.topic, null, 0), messages: [] };
        if (!frame.since) r.recovered = false;
        const reply = { action: "subscribed", topic: frame.topic, seq: r.seq, epoch: r.epoch, recovered: r.recovered, messages: r.messages, id };
        if (this.recordingOff) {
          // As the hub answers with recording off: no position, a recovery only when asked.
          delete reply.seq;
          delete reply.epoch;
          if (!frame.since) {
            delete reply.recovered;
            delete reply.messages;
          }
        }
        if (r.more) reply.more = true;
        return sock.receive(reply);
      }
      case "history": {
        const r = this.read(frame.topic, frame.since, frame.limit);
        return sock.receive({ action: "history", topic: frame.topic, ...r, id });
      }
      case "unsubscribe":
        sock.topics.delete(frame.topic);
        return sock.receive({ action: "unsubscribed", topic: frame.topic, id });
      case "sendmessage": {
        if (frame.topic === "forbidden") {
          return sock.receive({ action: "error", code: "forbidden_topic", message: "no", id });
        }
        const delivered = this.publish(frame.topic, frame.data, {
          to: this.open.filter((s) => s !== sock && s.topics.has(frame.topic)),
        });
        const { seq, epoch } = delivered;
        return sock.receive({ action: "sent", topic: frame.topic, recipients: 1, ...(seq ? { seq, epoch } : {}), id });
      }
      case "whoami":
        return sock.receive({ action: "whoami", connectionId: "c", userId: "u", topics: [...sock.topics], id });
      default:
        return sock.receive({ action: "error", code: "unknown_action", message: "?", id });
    }
  }
}
