export { Hub, WshubError } from "./hub.js";
