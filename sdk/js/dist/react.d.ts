import { type EventMeta, type Gap, type Status, type SubscribeOptions } from "./subscribe.js";
export interface HeraldChannelOptions extends Omit<SubscribeOptions, "channels" | "url" | "onStatus"> {
    /** The event types to listen to (default `["message"]`). */
    events?: string[];
    /** How many events `events` keeps, newest last (default 100). */
    keep?: number;
}
export interface HeraldEvent<T = any> extends EventMeta {
    data: T;
}
export interface HeraldChannelState<T = any> {
    /** The latest event, or `undefined` before the first. */
    last: HeraldEvent<T> | undefined;
    /** The last `keep` events, oldest first. */
    events: HeraldEvent<T>[];
    status: Status;
    /** The last `herald.gap`, if any: refetch the channel's state. */
    gap: Gap | undefined;
}
/**
 * Subscribes while the component is mounted. The subscription is opened by the effect and
 * closed by its clean-up, so React's strict mode (mount, unmount, mount) leaves exactly one
 * stream open. It is reopened when the channel, the stream's address or the event types change;
 * other options (callbacks) are read from the latest render.
 */
export declare function useHeraldChannel<T = any>(channel: string | string[], options: HeraldChannelOptions): HeraldChannelState<T>;
