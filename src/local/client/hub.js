import { probeUpgradeStatus } from "./probe.js";
/**
 * An error frame from the hub (`code` is the hub's stable error code), or one of the client's
 * own: `timeout` (no reply in `sendTimeoutSeconds`), `queue_full`, `connection_lost` (the socket
 * closed before the reply: the request may or may not have been served), `closed` (`hub.close()`).
 */
export class WshubError extends Error {
    code;
    /** The error frame, when the hub sent one. */
    frame;
    constructor(code, message, frame) {
        super(message);
        this.name = "WshubError";
        this.code = code;
        if (frame)
            this.frame = frame;
    }
}
/** One WebSocket, from construction to close. */
class Conn {
    ws;
    token;
    open = false;
    done = false;
    /** Replaced by a newer connection: its close is expected. */
    retired = false;
    openedAt = 0;
    requests = new Map();
    keepalive;
    rollover;
    lastError;
    url = "";
    protocols;
    constructor(ws, token) {
        this.ws = ws;
        this.token = token;
    }
}
const DEFAULTS = {
    keepaliveSeconds: 300,
    maxConnectionSeconds: 7200,
    rolloverMarginSeconds: 300,
    minDelayMs: 500,
    maxDelayMs: 20000,
    sendQueueLimit: 100,
    sendTimeoutSeconds: 30,
    pongTimeoutSeconds: 10,
    gapWaitMs: 500,
    lagFetchMs: 1000,
    historyLimit: 100,
};
/** Error codes that refusing a stream will not change on a retry. */
const PERMANENT = new Set(["forbidden_topic", "invalid_topic", "bad_request", "unknown_action", "bad_json", "missing_action"]);
/** Gap fills that make no progress before the missing range is given up as a gap. */
const MAX_FILL_TRIES = 3;
/** Ids of seq-less messages remembered to drop their duplicates (e.g. both sockets of a roll-over). */
const SEEN_IDS = 1024;
/** A connection that lived this long resets the back-off. */
const STABLE_MS = 10_000;
/** How long a replaced connection may finish its requests before it is closed. */
const RETIRE_GRACE_MS = 5_000;
/** Placeholders for this client's own publications, which the hub does not echo to their sender. */
const OWN = new WeakSet();
const isPosition = (p) => p != null && Number.isSafeInteger(p.seq) && p.seq >= 0 && typeof p.epoch === "string";
/** The HTTP status of a refused upgrade, when the WebSocket implementation tells it. */
function refusedStatus(event) {
    if (!event)
        return undefined;
    for (const s of [event.status, event.statusCode, event.error?.status, event.error?.statusCode]) {
        if (s === 401 || s === 403)
            return s;
    }
    // The `ws` package: "Unexpected server response: 401".
    for (const text of [event.message, event.error?.message, event.reason]) {
        const m = typeof text === "string" ? /\b(401|403)\b/.exec(text) : null;
        if (m)
            return Number(m[1]);
    }
    return undefined;
}
/**
 * A connection to a wshub hub that, to the app, never breaks: it reconnects with back-off,
 * resubscribes with recovery, delivers each stream's messages in `seq` order and once, keeps the
 * socket alive and rolls over to a new socket before API Gateway's 2-hour cap.
 */
export class Hub {
    url;
    opts;
    tokenOption;
    tokenIn;
    WS;
    /** The global WebSocket, which hides a refused upgrade's status: probed in Node.js. */
    probe;
    currentState = "connecting";
    primary = null;
    /** The socket being opened: a reconnect (no primary) or a roll-over (beside the primary). */
    pendingConn = null;
    /** A roll-over socket that is open and catching up, not yet switched to. */
    rolling = null;
    streams = new Map();
    listeners = {
        message: new Set(),
        state: new Set(),
        gap: new Set(),
        error: new Set(),
    };
    queue = [];
    attempt = 0;
    reconnectTimer;
    rolloverRetry;
    closed = false;
    nextId = 0;
    seen = new Set();
    lastRefusedToken;
    constructor(url, options = {}) {
        this.url = url;
        const r = options.reconnect ?? {};
        this.opts = {
            keepaliveSeconds: options.keepaliveSeconds ?? DEFAULTS.keepaliveSeconds,
            maxConnectionSeconds: options.maxConnectionSeconds ?? DEFAULTS.maxConnectionSeconds,
            rolloverMarginSeconds: options.rolloverMarginSeconds ?? DEFAULTS.rolloverMarginSeconds,
            minDelayMs: r.minDelayMs ?? DEFAULTS.minDelayMs,
            maxDelayMs: r.maxDelayMs ?? DEFAULTS.maxDelayMs,
            maxAttempts: r.maxAttempts ?? Infinity,
            sendQueueLimit: options.sendQueueLimit ?? DEFAULTS.sendQueueLimit,
            sendTimeoutSeconds: options.sendTimeoutSeconds ?? DEFAULTS.sendTimeoutSeconds,
            pongTimeoutSeconds: options.pongTimeoutSeconds ?? DEFAULTS.pongTimeoutSeconds,
            gapWaitMs: options.gapWaitMs ?? DEFAULTS.gapWaitMs,
            lagFetchMs: options.lagFetchMs ?? DEFAULTS.lagFetchMs,
            historyLimit: options.historyLimit ?? DEFAULTS.historyLimit,
        };
        for (const [name, value] of Object.entries(this.opts)) {
            if (typeof value !== "number" || !(value >= 0))
                throw new TypeError(`wshub-client: ${name} must be a number >= 0`);
        }
        if (this.opts.keepaliveSeconds <= 0 || this.opts.maxConnectionSeconds <= 0) {
            throw new TypeError("wshub-client: keepaliveSeconds and maxConnectionSeconds must be > 0");
        }
        this.tokenOption = options.token;
        this.tokenIn = options.tokenIn ?? "protocol";
        if (this.tokenIn !== "protocol" && this.tokenIn !== "query") {
            throw new TypeError('wshub-client: tokenIn must be "protocol" or "query"');
        }
        const WS = options.webSocket ?? globalThis.WebSocket;
        if (typeof WS !== "function") {
            throw new TypeError("wshub-client: no global WebSocket (Node.js >= 22 has one); pass options.webSocket");
        }
        this.WS = WS;
        this.probe = options.webSocket === undefined;
        for (const [topic, pos] of Object.entries(options.positions ?? {})) {
            if (isPosition(pos))
                this.stream(topic).pos = { seq: pos.seq, epoch: pos.epoch };
        }
        // Connect on the next tick, so listeners added right after the constructor see every state.
        this.reconnectTimer = setTimeout(() => {
            this.reconnectTimer = undefined;
            void this.connect();
        }, 0);
    }
    /** The current state. */
    get state() {
        return this.currentState;
    }
    /** Adds a listener; returns a function that removes it. */
    on(event, listener) {
        const set = this.listeners[event];
        if (!set)
            throw new TypeError(`wshub-client: unknown event ${String(event)}`);
        set.add(listener);
        return () => this.off(event, listener);
    }
    off(event, listener) {
        this.listeners[event]?.delete(listener);
    }
    /** Subscribes to `topic`; `handler` gets its messages in `seq` order, each once. */
    subscribe(topic, handler) {
        if (typeof topic !== "string" || topic === "")
            throw new TypeError("wshub-client: topic must be a non-empty string");
        if (this.closed)
            throw new WshubError("closed", "the hub is closed");
        const s = this.stream(topic);
        if (handler)
            s.handlers.add(handler);
        s.subs++;
        if (s.subs === 1) {
            for (const conn of [this.primary, this.rolling])
                if (conn?.open && !conn.done)
                    void this.sync(conn, s, true);
        }
        let active = true;
        return {
            topic,
            unsubscribe: () => {
                if (!active)
                    return;
                active = false;
                if (handler)
                    s.handlers.delete(handler);
                s.subs--;
                if (s.subs > 0)
                    return;
                this.clearStreamTimers(s);
                if (!topic.startsWith("user:"))
                    this.streams.delete(topic);
                for (const conn of [this.primary, this.rolling]) {
                    if (conn?.open && !conn.done && !this.closed)
                        this.rpc(conn, { action: "unsubscribe", topic }).catch(() => { });
                }
            },
        };
    }
    /** Publishes `data` to `topic`'s subscribers; resolves with the `sent` reply. */
    send(topic, data) {
        return this.request({ action: "sendmessage", topic, data });
    }
    /**
     * Sends any request and resolves with its reply (matched by `id`, which the client assigns),
     * or rejects with a `WshubError`. While disconnected it waits in the send queue.
     */
    request(frame) {
        return new Promise((resolve, reject) => {
            if (this.closed)
                return reject(new WshubError("closed", "the hub is closed"));
            if (frame == null || typeof frame !== "object" || typeof frame.action !== "string") {
                return reject(new TypeError("wshub-client: a request is an object with an action"));
            }
            const item = { frame, resolve, reject, timer: undefined };
            item.timer = setTimeout(() => {
                this.forget(item);
                reject(new WshubError("timeout", `no reply to ${frame.action} within ${this.opts.sendTimeoutSeconds} s`));
            }, this.opts.sendTimeoutSeconds * 1000);
            const conn = this.primary;
            if (conn?.open && this.currentState === "connected") {
                this.transmit(conn, item);
            }
            else if (this.queue.length >= this.opts.sendQueueLimit) {
                clearTimeout(item.timer);
                reject(new WshubError("queue_full", `${this.queue.length} requests already wait for a connection`));
            }
            else {
                this.queue.push(item);
            }
        });
    }
    /** The latest delivered position of every stream: persist it and pass it back as `positions`. */
    positions() {
        const out = {};
        for (const s of this.streams.values())
            if (s.pos)
                out[s.topic] = { ...s.pos };
        return out;
    }
    /** Closes the connection for good: queued and pending requests are rejected with `closed`. */
    close() {
        if (this.closed)
            return;
        this.closed = true;
        clearTimeout(this.reconnectTimer);
        clearTimeout(this.rolloverRetry);
        for (const s of this.streams.values())
            this.clearStreamTimers(s);
        for (const conn of [this.primary, this.pendingConn, this.rolling])
            if (conn)
                this.retire(conn, 0, "closed");
        this.primary = this.pendingConn = this.rolling = null;
        this.failQueue(new WshubError("closed", "the hub is closed"));
        this.setState("closed", { reason: "closed" });
    }
    // ---- connections ----
    async connect(rollover = false) {
        if (this.closed)
            return;
        if (!rollover)
            this.setState("connecting");
        let token;
        try {
            token = typeof this.tokenOption === "function" ? await this.tokenOption() : this.tokenOption;
            if (token != null && typeof token !== "string")
                throw new TypeError("the token function must yield a string");
        }
        catch (e) {
            this.emit("error", { error: e instanceof Error ? e : new Error(String(e)) });
            return this.failedAttempt(rollover);
        }
        if (this.closed)
            return;
        let url = this.url;
        let protocols;
        if (token != null && token !== "") {
            if (this.tokenIn === "query")
                url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
            // As browsers must: the token is the second offered subprotocol, "websocket" the one accepted.
            else
                protocols = ["websocket", token];
        }
        let ws;
        try {
            ws = protocols ? new this.WS(url, protocols) : new this.WS(url);
        }
        catch (e) {
            // A token with characters a subprotocol cannot carry; no retry will change that.
            this.emit("error", { error: e instanceof Error ? e : new Error(String(e)) });
            if (typeof this.tokenOption === "function")
                return this.failedAttempt(rollover);
            return this.shutdown({ reason: "invalid_token" });
        }
        const conn = new Conn(ws, token);
        conn.url = url;
        conn.protocols = protocols;
        this.pendingConn = conn;
        ws.onopen = () => this.onOpen(conn);
        ws.onmessage = (event) => this.onFrame(conn, event.data);
        ws.onerror = (event) => {
            conn.lastError = event;
        };
        ws.onclose = (event) => this.onClose(conn, event);
    }
    onOpen(conn) {
        if (conn.done || this.closed)
            return;
        conn.open = true;
        conn.openedAt = Date.now();
        this.pendingConn = null;
        this.lastRefusedToken = undefined;
        this.armKeepalive(conn);
        const { maxConnectionSeconds, rolloverMarginSeconds } = this.opts;
        // Before the cap, with a margin; a margin as long as the cap would roll over in a loop.
        const rollAfter = rolloverMarginSeconds < maxConnectionSeconds ? maxConnectionSeconds - rolloverMarginSeconds : maxConnectionSeconds / 2;
        conn.rollover = setTimeout(() => this.startRollover(conn), rollAfter * 1000);
        const old = this.primary;
        if (old && old.open && !old.done) {
            // A roll-over: resubscribe here from the current positions while the old socket still
            // delivers, then switch; seq dedupe drops what both sockets deliver.
            this.rolling = conn;
            void this.syncAll(conn, true).then(() => this.switchTo(conn));
            return;
        }
        this.primary = conn;
        this.setState("connected");
        void this.syncAll(conn, false);
        this.flushQueue(conn);
    }
    switchTo(conn) {
        if (conn !== this.rolling || conn.done || this.closed)
            return;
        this.rolling = null;
        const old = this.primary;
        this.primary = conn;
        if (old && old !== conn)
            this.retire(old, RETIRE_GRACE_MS, "roll-over");
        this.flushQueue(conn);
    }
    startRollover(conn) {
        if (conn !== this.primary || conn.done || this.closed || this.pendingConn || this.rolling)
            return;
        void this.connect(true);
    }
    /** Closes a connection whose close is expected, after its requests finish (up to `graceMs`). */
    retire(conn, graceMs, reason) {
        conn.retired = true;
        this.stopTimers(conn);
        const finish = () => {
            if (conn.done)
                return;
            conn.done = true;
            this.failRequests(conn, reason === "closed"
                ? new WshubError("closed", "the hub is closed")
                : new WshubError("connection_lost", `the connection was closed (${reason})`));
            try {
                conn.ws.close(1000, reason);
            }
            catch {
                // Already closed.
            }
        };
        if (graceMs === 0 || conn.requests.size === 0)
            return finish();
        const started = Date.now();
        const poll = setInterval(() => {
            if (conn.requests.size === 0 || Date.now() - started >= graceMs || conn.done) {
                clearInterval(poll);
                finish();
            }
        }, 50);
    }
    onClose(conn, event) {
        const wasOpen = conn.open;
        conn.open = false;
        this.stopTimers(conn);
        if (!conn.done) {
            conn.done = true;
            this.failRequests(conn, new WshubError("connection_lost", "the connection closed before the reply"));
        }
        if (conn.retired || this.closed)
            return;
        if (this.pendingConn === conn)
            this.pendingConn = null;
        const rollover = !wasOpen && this.primary?.open === true && !this.primary.done;
        if (!wasOpen) {
            const status = refusedStatus(conn.lastError) ?? refusedStatus(event);
            if (status !== undefined || !this.probe)
                return this.failedBeforeOpen(conn, status, rollover);
            void probeUpgradeStatus(conn.url, conn.protocols).then((probed) => {
                if (!this.closed)
                    this.failedBeforeOpen(conn, probed === 401 || probed === 403 ? probed : undefined, rollover);
            });
            return;
        }
        if (conn === this.rolling) {
            // The roll-over socket closed before the switch; the old one still serves.
            this.rolling = null;
            return this.failedAttempt(true);
        }
        if (conn !== this.primary)
            return;
        this.primary = null;
        if (Date.now() - conn.openedAt >= STABLE_MS)
            this.attempt = 0;
        const next = this.rolling;
        if (next && next.open && !next.done) {
            // The cap came before the switch: the roll-over socket (already resubscribing) takes over.
            this.rolling = null;
            this.primary = next;
            this.flushQueue(next);
            return;
        }
        this.setState("disconnected");
        // A roll-over socket still opening becomes the reconnect.
        if (!this.pendingConn)
            this.scheduleReconnect();
    }
    failedBeforeOpen(conn, status, rollover) {
        if (status !== undefined) {
            const fn = typeof this.tokenOption === "function";
            // A function may yield a new token; the same token refused twice will not pass either.
            if (!fn || this.lastRefusedToken === conn.token)
                return this.shutdown({ reason: "refused", status });
            this.lastRefusedToken = conn.token;
        }
        this.failedAttempt(rollover);
    }
    failedAttempt(rollover) {
        if (this.closed)
            return;
        if (rollover && this.primary?.open && !this.primary.done) {
            // The old socket still serves: try the roll-over again after a back-off.
            const delay = this.backoff();
            this.rolloverRetry = setTimeout(() => this.primary && this.startRollover(this.primary), delay);
            return;
        }
        if (this.attempt >= this.opts.maxAttempts)
            return this.shutdown({});
        this.setState("disconnected");
        this.scheduleReconnect();
    }
    backoff() {
        return this.backoffFor(this.attempt++);
    }
    /** Full jitter: uniformly random below a cap doubling from `minDelayMs` to `maxDelayMs`. */
    backoffFor(attempt) {
        const cap = Math.min(this.opts.maxDelayMs, this.opts.minDelayMs * 2 ** Math.min(attempt, 30));
        return Math.random() * cap;
    }
    scheduleReconnect() {
        clearTimeout(this.reconnectTimer);
        this.reconnectTimer = setTimeout(() => {
            this.reconnectTimer = undefined;
            void this.connect();
        }, this.backoff());
    }
    shutdown(detail) {
        this.closed = true;
        clearTimeout(this.reconnectTimer);
        clearTimeout(this.rolloverRetry);
        for (const s of this.streams.values())
            this.clearStreamTimers(s);
        for (const conn of [this.primary, this.pendingConn, this.rolling])
            if (conn)
                this.retire(conn, 0, "closed");
        this.primary = this.pendingConn = this.rolling = null;
        this.failQueue(new WshubError("closed", `the hub is closed (${detail.reason ?? "gave up reconnecting"})`));
        this.setState("closed", detail);
    }
    stopTimers(conn) {
        clearTimeout(conn.keepalive);
        clearTimeout(conn.rollover);
    }
    // ---- keepalive ----
    /** Re-armed on every send: a `ping` goes out only after `keepaliveSeconds` of silence. */
    armKeepalive(conn) {
        clearTimeout(conn.keepalive);
        conn.keepalive = setTimeout(() => {
            if (conn.done)
                return;
            const ping = this.rpc(conn, { action: "ping" }, this.opts.pongTimeoutSeconds);
            ping.catch((e) => {
                if (e.code !== "timeout" || conn.done)
                    return;
                // No pong: the socket is dead even if it still looks open.
                this.drop(conn, 4000, "no pong");
            });
        }, this.opts.keepaliveSeconds * 1000);
    }
    /** Gives up on a socket now, without waiting for a close handshake a dead peer never sends. */
    drop(conn, code, reason) {
        const ws = conn.ws;
        ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
        try {
            ws.close(code, reason);
        }
        catch {
            // Already closed.
        }
        this.onClose(conn, { code, reason });
    }
    // ---- requests ----
    transmit(conn, item) {
        const id = `c${++this.nextId}`;
        item.conn = conn;
        item.id = id;
        conn.requests.set(id, item);
        this.write(conn, { ...item.frame, id });
    }
    write(conn, frame) {
        try {
            conn.ws.send(JSON.stringify(frame));
        }
        catch (e) {
            // A socket that cannot send is dead; its requests fail with connection_lost.
            this.drop(conn, 4001, "send failed");
            return;
        }
        this.armKeepalive(conn);
    }
    /** An internal request on one connection: never queued. */
    rpc(conn, frame, timeoutSeconds = this.opts.sendTimeoutSeconds) {
        return new Promise((resolve, reject) => {
            if (conn.done || !conn.open)
                return reject(new WshubError("connection_lost", "not connected"));
            const item = { frame, resolve, reject, timer: undefined };
            item.timer = setTimeout(() => {
                this.forget(item);
                reject(new WshubError("timeout", `no reply to ${frame.action} within ${timeoutSeconds} s`));
            }, timeoutSeconds * 1000);
            this.transmit(conn, item);
        });
    }
    forget(item) {
        const i = this.queue.indexOf(item);
        if (i >= 0)
            this.queue.splice(i, 1);
        if (item.conn && item.id)
            item.conn.requests.delete(item.id);
    }
    flushQueue(conn) {
        const queued = this.queue;
        this.queue = [];
        for (const item of queued)
            this.transmit(conn, item);
    }
    failQueue(error) {
        const queued = this.queue;
        this.queue = [];
        for (const item of queued) {
            clearTimeout(item.timer);
            item.reject(error);
        }
    }
    failRequests(conn, error) {
        const requests = [...conn.requests.values()];
        conn.requests.clear();
        for (const item of requests) {
            clearTimeout(item.timer);
            item.reject(error);
        }
    }
    // ---- frames ----
    onFrame(conn, data) {
        if (conn.done)
            return;
        let frame;
        try {
            frame = JSON.parse(String(data));
        }
        catch {
            return; // not a frame of this protocol
        }
        if (frame == null || typeof frame !== "object")
            return;
        if (frame.action === "message")
            return this.onMessage(frame);
        const id = typeof frame.id === "string" ? frame.id : undefined;
        const item = id !== undefined ? conn.requests.get(id) : undefined;
        if (!item)
            return;
        conn.requests.delete(id);
        clearTimeout(item.timer);
        if (frame.action === "error") {
            item.reject(new WshubError(String(frame.code ?? "error"), String(frame.message ?? "error"), frame));
            // The hub no longer knows this connection: a new one will.
            if (frame.code === "not_connected")
                this.drop(conn, 4002, "not connected");
        }
        else {
            if (frame.action === "sent")
                this.own(frame);
            item.resolve(frame);
        }
    }
    onMessage(frame) {
        const { action: _action, ...msg } = frame;
        const m = msg;
        const topic = typeof m.topic === "string" ? m.topic : undefined;
        const tracked = Number.isSafeInteger(m.seq) && typeof m.epoch === "string";
        if (topic && tracked) {
            let s = this.streams.get(topic);
            // A user's own stream reaches every connection unasked: follow it like a subscription.
            if (!s && topic.startsWith("user:"))
                s = this.stream(topic);
            if (s)
                return this.ingest(s, m);
        }
        // Not recorded (a broadcast, a connection push, recording off): drop duplicates by id.
        if (typeof m.id === "string") {
            if (this.seen.has(m.id))
                return;
            this.seen.add(m.id);
            if (this.seen.size > SEEN_IDS)
                this.seen.delete(this.seen.values().next().value);
        }
        const s = topic ? this.streams.get(topic) : undefined;
        this.deliver(s, m);
    }
    // ---- streams ----
    stream(topic) {
        let s = this.streams.get(topic);
        if (!s) {
            s = {
                topic,
                pos: null,
                handlers: new Set(),
                subs: 0,
                subscribed: false,
                syncing: 0,
                early: [],
                pending: new Map(),
                gapTimer: undefined,
                lagTimer: undefined,
                fillTries: 0,
            };
            this.streams.set(topic, s);
        }
        return s;
    }
    live(s) {
        return this.streams.get(s.topic) === s && !this.closed;
    }
    ingest(s, m) {
        if (!s.pos && s.syncing > 0) {
            s.early.push(m);
            return;
        }
        this.accept(s, m);
        if (s.pending.size > 0 && s.syncing === 0)
            this.scheduleGapFill(s);
    }
    /** The ordering rule: deliver seq pos+1, keep later ones until the hole fills, drop the rest. */
    accept(s, m) {
        const seq = m.seq;
        const epoch = m.epoch;
        if (!s.pos) {
            s.pos = { seq: seq - 1, epoch };
        }
        else if (epoch !== s.pos.epoch) {
            // The stream's history was lost or reset: what came before cannot be recovered.
            this.gap(s, epoch, "epoch");
            s.pending.clear();
            s.pos = { seq: seq - 1, epoch };
        }
        if (seq <= s.pos.seq || s.pending.has(seq))
            return;
        if (seq !== s.pos.seq + 1) {
            s.pending.set(seq, m);
            return;
        }
        this.advance(s, m);
        this.drain(s);
    }
    advance(s, m) {
        s.pos = { seq: m.seq, epoch: m.epoch };
        if (!OWN.has(m))
            this.deliver(s, m);
    }
    /**
     * A `sent` reply names the seq this client's own message took in the topic's stream. The hub
     * does not send a message back to its sender, so that seq is passed over here instead of
     * being taken for a hole (and read back from history).
     */
    own(reply) {
        const { topic, seq, epoch } = reply;
        if (typeof topic !== "string" || !Number.isSafeInteger(seq) || typeof epoch !== "string")
            return;
        const s = this.streams.get(topic);
        if (!s || !s.pos || s.pos.epoch !== epoch)
            return;
        const placeholder = { topic, data: undefined, seq, epoch };
        OWN.add(placeholder);
        this.accept(s, placeholder);
    }
    drain(s) {
        let next;
        while (s.pos && (next = s.pending.get(s.pos.seq + 1))) {
            s.pending.delete(next.seq);
            this.advance(s, next);
        }
    }
    /** Gives up on everything before `seq`: what was received is delivered in order, the rest is a gap. */
    skipTo(s, seq, epoch) {
        if (!s.pos || s.pos.epoch !== epoch) {
            s.pending.clear();
            s.pos = { seq, epoch };
            return;
        }
        for (const key of [...s.pending.keys()].sort((a, b) => a - b)) {
            if (key > seq)
                break;
            const m = s.pending.get(key);
            s.pending.delete(key);
            this.advance(s, m);
        }
        if (seq > s.pos.seq)
            s.pos = { seq, epoch };
        this.drain(s);
    }
    deliver(s, m) {
        if (s)
            for (const handler of [...s.handlers])
                this.call(handler, m);
        for (const listener of [...this.listeners.message])
            this.call(listener, m);
    }
    /** Resubscribes every stream on a new connection; resolves when all are caught up. */
    async syncAll(conn, rollover) {
        const work = [];
        for (const s of [...this.streams.values()]) {
            // Resubscribing after a reconnect (not a roll-over, where the old socket still delivers).
            if (s.subs > 0)
                work.push(this.sync(conn, s, true, !rollover && s.subscribed));
            // The user's own streams need no subscribe: what came while away is read with history.
            else if (!rollover && s.pos && s.topic.startsWith("user:"))
                work.push(this.sync(conn, s, false));
        }
        await Promise.all(work);
    }
    /** `subscribe` with `since` (or a `history` read), the missed messages applied, pages read while `more`. */
    async sync(conn, s, subscribe, resumed = false) {
        s.syncing++;
        const since = s.pos ? { ...s.pos } : null;
        let ok = false;
        try {
            const reply = subscribe
                ? await this.rpc(conn, { action: "subscribe", topic: s.topic, ...(since ? { since } : {}) })
                : await this.rpc(conn, { action: "history", topic: s.topic, since, limit: this.opts.historyLimit });
            if (!this.live(s))
                return;
            if (Number.isSafeInteger(reply.seq) && typeof reply.epoch === "string") {
                if (since)
                    await this.applyPages(conn, s, reply, since);
                else
                    s.pos = { seq: this.startSeq(s, reply.seq, reply.epoch), epoch: reply.epoch };
                ok = true;
            }
            else if (subscribe && (since || resumed)) {
                // The hub keeps no position for this stream (recording off, or a hub without history):
                // whatever was published while this client was away cannot be replayed.
                this.gap(s, undefined, "unrecorded");
            }
            if (subscribe)
                s.subscribed = true;
        }
        catch (e) {
            const error = e;
            if (error.frame && PERMANENT.has(error.code) && this.live(s)) {
                // The hub refused this stream (forbidden_topic, invalid_topic, …): stop following it.
                this.emit("error", { topic: s.topic, error });
                this.clearStreamTimers(s);
                this.streams.delete(s.topic);
            }
            else if (this.live(s) && conn === this.primary && conn.open && !conn.done) {
                // A timeout or a backend failure (`internal`) on a socket still in use: try again.
                setTimeout(() => {
                    if (this.live(s) && conn === this.primary && conn.open && !conn.done && s.syncing === 0) {
                        void this.sync(conn, s, subscribe, resumed);
                    }
                }, this.backoffFor(1));
            }
            // connection_lost: the next connection resubscribes.
        }
        finally {
            s.syncing--;
        }
        if (!this.live(s) || s.syncing > 0)
            return;
        this.release(s);
        if (ok && subscribe)
            this.scheduleLagFetch(s);
    }
    /**
     * Where a fresh subscription starts: after the stream's latest seq, unless publications at or
     * before it already arrived live (they were published after the hub registered the
     * subscription), which are then delivered too.
     */
    startSeq(s, latest, epoch) {
        let start = latest;
        for (const m of s.early)
            if (m.epoch === epoch && m.seq - 1 < start)
                start = m.seq - 1;
        return Math.max(0, start);
    }
    /** Applies a `subscribed` or `history` reply, then pages with `history` while `more`. */
    async applyPages(conn, s, first, since, connected = false) {
        let reply = first;
        let from = since;
        for (;;) {
            const messages = (Array.isArray(reply.messages) ? reply.messages : [])
                .filter((m) => m && Number.isSafeInteger(m.seq) && typeof m.epoch === "string")
                .map(({ action: _a, ...m }) => m)
                .sort((a, b) => a.seq - b.seq);
            // A read made while connected all along (the index-lag read, a gap fill) on a stream that
            // records nothing answers recovered:false too; with nothing newer than the position, and
            // no message held for a hole, nothing was missed.
            const nothingMissed = connected &&
                messages.length === 0 &&
                s.pending.size === 0 &&
                reply.epoch === from.epoch &&
                Number.isSafeInteger(reply.seq) &&
                reply.seq <= from.seq;
            if (reply.recovered === false && !nothingMissed) {
                // Reported once: a live message of the new epoch may have reported it already.
                const reported = s.pos?.epoch === reply.epoch && from.epoch !== reply.epoch;
                if (!reported)
                    this.gap(s, reply.epoch, reply.epoch === from.epoch ? "expired" : "epoch");
                const start = messages.length > 0 ? messages[0].seq - 1 : reply.seq;
                this.skipTo(s, Math.max(0, start), reply.epoch);
            }
            for (const m of messages)
                this.accept(s, m);
            if (reply.more !== true || !s.pos || !this.live(s))
                return;
            if (s.pos.seq === from.seq && s.pos.epoch === from.epoch)
                return; // no progress: never loop
            from = { ...s.pos };
            reply = await this.rpc(conn, { action: "history", topic: s.topic, since: from, limit: this.opts.historyLimit });
            if (!this.live(s))
                return;
        }
    }
    /** After a sync: live messages held while the start was unknown, then any hole left. */
    release(s) {
        const early = s.early.sort((a, b) => a.seq - b.seq);
        s.early = [];
        for (const m of early)
            this.accept(s, m);
        if (s.pending.size > 0)
            this.scheduleGapFill(s);
    }
    /** A live seq skipped ahead: wait briefly for the missing ones, then read them with history. */
    scheduleGapFill(s) {
        if (s.gapTimer)
            return;
        s.gapTimer = setTimeout(() => {
            s.gapTimer = undefined;
            void this.fillGap(s);
        }, this.opts.gapWaitMs);
    }
    async fillGap(s) {
        if (!this.live(s) || s.pending.size === 0 || s.syncing > 0 || !s.pos)
            return;
        const before = s.pos.seq;
        await this.fetchHistory(s);
        if (!this.live(s) || s.pending.size === 0 || s.syncing > 0) {
            s.fillTries = 0;
            return;
        }
        if (s.pos && s.pos.seq !== before)
            s.fillTries = 0;
        else if (++s.fillTries >= MAX_FILL_TRIES && s.pos) {
            // History has not got the missing messages (yet) after several tries: a gap.
            s.fillTries = 0;
            const first = Math.min(...s.pending.keys());
            this.gap(s, s.pos.epoch, "unfilled");
            this.skipTo(s, first - 1, s.pos.epoch);
            return;
        }
        this.scheduleGapFill(s);
    }
    /** One `history` read from the current position, with its pages. */
    async fetchHistory(s) {
        const conn = this.primary;
        if (!conn?.open || conn.done || !s.pos)
            return;
        s.syncing++;
        try {
            const since = { ...s.pos };
            const reply = await this.rpc(conn, { action: "history", topic: s.topic, since, limit: this.opts.historyLimit });
            if (this.live(s) && Number.isSafeInteger(reply.seq) && typeof reply.epoch === "string") {
                await this.applyPages(conn, s, reply, since, true);
            }
        }
        catch {
            // A lost connection resubscribes; an error frame leaves the hole to the next try.
        }
        finally {
            s.syncing--;
        }
        if (this.live(s) && s.syncing === 0)
            this.release(s);
    }
    /** Right after subscribing, a publication may reach this stream only through history
     *  (the hub's topic index is eventually consistent): read it once a moment later. */
    scheduleLagFetch(s) {
        clearTimeout(s.lagTimer);
        s.lagTimer = setTimeout(() => {
            s.lagTimer = undefined;
            if (this.live(s) && s.syncing === 0 && s.pos)
                void this.fetchHistory(s);
        }, this.opts.lagFetchMs);
    }
    clearStreamTimers(s) {
        clearTimeout(s.gapTimer);
        clearTimeout(s.lagTimer);
        s.gapTimer = s.lagTimer = undefined;
    }
    // ---- events ----
    gap(s, epoch, reason) {
        const event = { topic: s.topic, reason };
        if (s.pos)
            event.from = { ...s.pos };
        if (epoch !== undefined)
            event.epoch = epoch;
        this.emit("gap", event);
    }
    setState(state, detail = {}) {
        if (state === this.currentState)
            return;
        this.currentState = state;
        this.emit("state", state, detail);
    }
    emit(event, ...args) {
        for (const listener of [...this.listeners[event]])
            this.call(listener, ...args);
    }
    /** A throwing listener must not break delivery to the others, nor the client's state: its
     *  error goes to the `error` listeners, or (with none) is rethrown outside the client. */
    call(fn, ...args) {
        try {
            fn(...args);
        }
        catch (e) {
            const error = e instanceof Error ? e : new Error(String(e));
            const others = [...this.listeners.error].filter((l) => l !== fn);
            if (others.length > 0) {
                for (const l of others) {
                    try {
                        l({ error });
                    }
                    catch {
                        // An error listener that throws too: nothing left to tell.
                    }
                }
                return;
            }
            setTimeout(() => {
                throw e;
            }, 0);
        }
    }
}
