export { Hub, WshubError } from "./hub.js";
export type { Subscription } from "./hub.js";
export type {
  ErrorEvent,
  GapEvent,
  HubOptions,
  Message,
  Position,
  Positions,
  State,
  StateDetail,
  WebSocketConstructor,
  WebSocketLike,
} from "./types.js";
