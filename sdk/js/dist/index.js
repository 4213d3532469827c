export { HeraldError } from "./errors.js";
export { Publisher, } from "./publisher.js";
export { subscribe, } from "./subscribe.js";
