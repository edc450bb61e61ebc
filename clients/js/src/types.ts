/** The hub's connection states, as `hub.on("state", …)` reports them. */
export type State = "connecting" | "connected" | "disconnected" | "closed";

/** Where a stream was last seen: its latest delivered `seq` in its `epoch`. */
export interface Position {
  seq: number;
  epoch: string;
}

/** `{ [topic]: { seq, epoch } }`, as `hub.positions()` returns and the `positions` option takes. */
export type Positions = Record<string, Position>;

/** A message frame, as the app sees it (the frame without its `action`). */
export interface Message {
  /** The stream: a topic, or `user:<id>` for a push to this user. Absent for broadcasts. */
  topic?: string;
  data: unknown;
  /** The message's id (SQS messageId, EventBridge event id or API Gateway messageId). */
  id?: string;
  /** Position in the stream; absent on streams the hub does not record. */
  seq?: number;
  epoch?: string;
  /** The sender's userId, for `sendmessage`. */
  from?: string;
}

/** What `hub.on("gap", …)` gets: recovery was impossible, reload that topic's state. */
export interface GapEvent {
  topic: string;
  /**
   * `expired`: history no longer has what was missed (or the hub answered recovered:false);
   * `epoch`: the stream's history was lost or reset; `unrecorded`: the hub keeps no position
   * for the stream (recording off); `unfilled`: a skipped seq was not in history after several reads.
   */
  reason: "expired" | "epoch" | "unrecorded" | "unfilled";
  /** The position the client had when the gap was found (absent if none). */
  from?: Position;
  /** The stream's epoch after the gap. */
  epoch?: string;
}

/** What `hub.on("error", …)` gets: something the app asked for failed outside a promise. */
export interface ErrorEvent {
  topic?: string;
  error: Error;
}

/** Why the hub went to `closed` (the second argument of the `state` listener). */
export interface StateDetail {
  /** `"closed"` by `hub.close()`, `"refused"` for a refused token, `"invalid_token"` for a token a WebSocket cannot carry. */
  reason?: "closed" | "refused" | "invalid_token";
  /** The HTTP status of a refused upgrade, when the WebSocket implementation reports it. */
  status?: number;
}

/** The part of the standard WebSocket this client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol?: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
  onerror: ((event: any) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
}

/** A WebSocket class: the global `WebSocket`, the `ws` package's, or a test's fake. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface HubOptions {
  /** The token: a string, or a (possibly async) function called on every connect. */
  token?: string | (() => string | Promise<string>);
  /** Positions saved from `hub.positions()`: subscriptions resume after them. */
  positions?: Positions;
  /** A WebSocket implementation; defaults to the global `WebSocket`. */
  webSocket?: WebSocketConstructor;
  /** Where the token goes: `Sec-WebSocket-Protocol` (default) or the `token` query parameter. */
  tokenIn?: "protocol" | "query";
  /** Send a `ping` after this many seconds without sending anything (default 300; API Gateway's idle timeout is 600). */
  keepaliveSeconds?: number;
  /** The server's maximum connection duration (default 7200, API Gateway's). */
  maxConnectionSeconds?: number;
  /** Roll over to a new connection this long before `maxConnectionSeconds` (default 300). */
  rolloverMarginSeconds?: number;
  /** Reconnect back-off: full jitter between 0 and `minDelayMs` doubling per attempt up to `maxDelayMs`. */
  reconnect?: { minDelayMs?: number; maxDelayMs?: number; maxAttempts?: number };
  /** Sends and requests held while disconnected (default 100); one more is rejected with `queue_full`. */
  sendQueueLimit?: number;
  /** How long a send or request may wait for its reply, queueing included (default 30). */
  sendTimeoutSeconds?: number;
  /** How long a `ping` may wait for its `pong` before the socket counts as dead (default 10). */
  pongTimeoutSeconds?: number;
  /** How long a skipped `seq` is awaited live before it is fetched with `history` (default 500). */
  gapWaitMs?: number;
  /** When, after each subscribe, one `history` fetch closes the index-lag window (default 1000). */
  lagFetchMs?: number;
  /** Page size of `history` fetches (default 100; the hub allows up to 1000). */
  historyLimit?: number;
}
