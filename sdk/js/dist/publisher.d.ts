/** How persistently a request is retried on 429, 503 and network failures. */
export interface RetryOptions {
    /** Attempts in all, the first included (default 5; 1 = no retry). */
    maxAttempts?: number;
    /** The most time spent waiting between attempts, in all (default 30 000 ms). A `Retry-After`
     * that would go past it is thrown at once. */
    maxWaitMs?: number;
}
export interface PublisherOptions {
    /** Herald's base URL, e.g. `https://herald.example.com`. */
    baseUrl: string;
    tenant: string;
    /** An API key of the tenant (`hk_...`): server-side only, never in a browser. */
    key: string;
    retry?: RetryOptions;
    /** A `fetch` of your own (default: the global one). */
    fetch?: typeof fetch;
}
export interface PublishOptions {
    /** The event type (default `message`). */
    event?: string;
    /** The `Idempotency-Key`; generated when absent, and the same on every retry of the call. */
    idempotencyKey?: string;
}
export interface Published {
    channel: string;
    id: string;
}
export interface BatchEvent {
    channel: string;
    event?: string;
    data: unknown;
}
export interface TokenRequest {
    /** Channel names; `*` may end one (`team:7:*`). */
    channels?: string[];
    ttlSeconds?: number;
    /** The user the token is for: grants the personal channels `name@<sub>`. */
    sub?: string;
}
export interface Token {
    token: string;
    /** RFC 3339. */
    expiresAt: string;
}
export interface HistoryEvent<T = unknown> {
    id: string;
    event: string;
    data: T;
}
export interface HistoryPage<T = unknown> {
    events: HistoryEvent<T>[];
    /** `history_truncated` or `invalid_cursor` when the page does not follow `after` exactly. */
    gap?: "history_truncated" | "invalid_cursor";
}
export interface ChannelInfo {
    channel: string;
    subscribers: number;
    last_event_id: string | null;
    retained: number;
}
/** Publishes to Herald from a server: events, batches, subscriber tokens, history. */
export declare class Publisher {
    #private;
    constructor(options: PublisherOptions);
    /** Publishes `data` (any JSON value) to `channel`. */
    publish(channel: string, data: unknown, options?: PublishOptions): Promise<Published>;
    /** Publishes 1 to 100 events, all or nothing, under one idempotency key. */
    publishBatch(events: BatchEvent[], options?: {
        idempotencyKey?: string;
    }): Promise<Published[]>;
    /** Mints a subscriber token (the key needs the `subscribe` scope). */
    mintToken(request?: TokenRequest): Promise<Token>;
    /** One page of history, oldest first: the events after `after` (from the oldest retained
     * without it). Page on with the last event's `id`. */
    history<T = unknown>(channel: string, options?: {
        after?: string;
        limit?: number;
    }): Promise<HistoryPage<T>>;
    /** A channel's subscribers, last event id and retained count. */
    channel(channel: string): Promise<ChannelInfo>;
}
/** 128 random bits as a UUID. */
export declare function newKey(): string;
