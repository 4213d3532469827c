/** Where a subscription is, for UIs. */
export type Status = "connecting" | "open" | "reconnecting" | "paused" | "closed";
/** What a handler learns besides the data. */
export interface EventMeta {
    /** The event's cursor (`id:`). */
    id: string;
    /** The event type. */
    event: string;
    /** The data as it came on the wire, before JSON parsing. */
    raw: string;
}
export interface Gap {
    channel: string;
    reason: "history_truncated" | "invalid_cursor";
}
/** A token, or a token with its expiry (a `Date`, epoch milliseconds or an RFC 3339 string).
 * Without one, the expiry is read from the JWT's `exp`. */
export type TokenResult = string | {
    token: string;
    expiresAt?: Date | number | string;
};
/** Anything like `sessionStorage` or `localStorage`. */
export interface CursorStore {
    getItem(key: string): string | null;
    setItem(key: string, value: string): void;
}
/** Anything like `document`, for pausing while the page is hidden. */
export interface VisibilitySource {
    readonly hidden: boolean;
    addEventListener(type: "visibilitychange", listener: () => void): void;
    removeEventListener(type: "visibilitychange", listener: () => void): void;
}
/** The part of the `EventSource` interface this client uses. */
export interface EventSourceLike {
    readonly readyState: number;
    onopen: ((this: any, ev: any) => any) | null;
    onerror: ((this: any, ev: any) => any) | null;
    addEventListener(type: string, listener: (ev: any) => void): void;
    close(): void;
}
export type EventSourceConstructor = new (url: string) => EventSourceLike;
export interface SubscribeOptions {
    /** A complete channel URL, as the admin shows it. Or give `baseUrl`, `tenant`, `channels`. */
    url?: string;
    baseUrl?: string;
    tenant?: string;
    /** One channel, or up to 16 on one connection. */
    channels?: string | string[];
    /** A fixed subscriber token (private channels). Prefer `getToken` for long-lived pages. */
    token?: string;
    /** Supplies a token; called at start, before each expiry, and after a refused connect. */
    getToken?: () => TokenResult | Promise<TokenResult>;
    /** Start after this cursor (else the `cursorStore`'s, else live). */
    lastEventId?: string;
    /** Keeps the last cursor, so that a page reload continues where it left off. */
    cursorStore?: CursorStore;
    /** The store's key (default: derived from the stream's URL). */
    cursorKey?: string;
    onGap?: (gap: Gap) => void;
    onStatus?: (status: Status) => void;
    /** Connect failures (the stream keeps retrying). */
    onError?: (error: unknown) => void;
    /** Close the stream while the page is hidden and resume from the cursor when it is shown.
     * `true` uses the global `document`. */
    pauseWhenHidden?: boolean | VisibilitySource;
    /** `sse` (default when an `EventSource` exists) or `poll`: the history API with `after=`. */
    transport?: "sse" | "poll";
    /** Polling interval (default 2000 ms). */
    pollIntervalMs?: number;
    /** An `EventSource` implementation (default: the global one). */
    EventSource?: EventSourceConstructor;
    /** Refresh a token this long before it expires (default: a quarter of its life, at most 60 s). */
    refreshBeforeMs?: number;
    /** `fetch` for polling (default: the global one). */
    fetch?: typeof fetch;
}
export type Handler<T = any> = (data: T, meta: EventMeta) => void;
/** A live subscription. */
export interface Subscription {
    /** Calls `handler` for each event of `type` (`message` for events published without one),
     * with the data parsed as JSON once (text that is not JSON is passed as it is). Returns a
     * function that removes the handler. */
    on<T = any>(type: string, handler: Handler<T>): () => void;
    /** Stops for good. */
    close(): void;
    readonly status: Status;
    /** The last cursor received. */
    readonly lastEventId: string | undefined;
}
/** Subscribes to one or more channels. */
export declare function subscribe(options: SubscribeOptions): Subscription;
