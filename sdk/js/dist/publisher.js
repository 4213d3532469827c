import { HeraldError, errorFrom } from "./errors.js";
/** Publishes to Herald from a server: events, batches, subscriber tokens, history. */
export class Publisher {
    #base;
    #tenant;
    #key;
    #maxAttempts;
    #maxWaitMs;
    #fetch;
    constructor(options) {
        this.#base = options.baseUrl.replace(/\/+$/, "");
        this.#tenant = options.tenant;
        this.#key = options.key;
        this.#maxAttempts = options.retry?.maxAttempts ?? 5;
        this.#maxWaitMs = options.retry?.maxWaitMs ?? 30_000;
        this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    }
    /** Publishes `data` (any JSON value) to `channel`. */
    publish(channel, data, options = {}) {
        const body = { data };
        if (options.event !== undefined)
            body.event = options.event;
        return this.#send("POST", `/channels/${enc(channel)}/events`, body, options.idempotencyKey);
    }
    /** Publishes 1 to 100 events, all or nothing, under one idempotency key. */
    async publishBatch(events, options = {}) {
        const answer = await this.#send("POST", "/events", { events }, options.idempotencyKey);
        return answer.results;
    }
    /** Mints a subscriber token (the key needs the `subscribe` scope). */
    async mintToken(request = {}) {
        const body = { channels: request.channels ?? [] };
        if (request.ttlSeconds !== undefined)
            body.ttl_seconds = request.ttlSeconds;
        if (request.sub !== undefined)
            body.sub = request.sub;
        const answer = await this.#send("POST", "/tokens", body);
        return { token: answer.token, expiresAt: answer.expires_at };
    }
    /** One page of history, oldest first: the events after `after` (from the oldest retained
     * without it). Page on with the last event's `id`. */
    history(channel, options = {}) {
        const query = new URLSearchParams();
        if (options.after !== undefined)
            query.set("after", options.after);
        if (options.limit !== undefined)
            query.set("limit", String(options.limit));
        const q = query.toString() ? `?${query}` : "";
        return this.#send("GET", `/channels/${enc(channel)}/history${q}`);
    }
    /** A channel's subscribers, last event id and retained count. */
    channel(channel) {
        return this.#send("GET", `/channels/${enc(channel)}`);
    }
    async #send(method, path, body, key) {
        const headers = { authorization: `Bearer ${this.#key}` };
        if (body !== undefined)
            headers["content-type"] = "application/json";
        if (method === "POST" && path !== "/tokens")
            headers["idempotency-key"] = key ?? newKey();
        const url = `${this.#base}/v1/${enc(this.#tenant)}${path}`;
        const init = { method, headers };
        if (body !== undefined)
            init.body = JSON.stringify(body);
        const started = Date.now();
        for (let attempt = 1;; attempt++) {
            let error;
            try {
                const response = await this.#fetch(url, init);
                if (response.ok)
                    return (await response.json());
                error = await errorFrom(response);
            }
            catch (cause) {
                if (cause instanceof HeraldError)
                    throw cause;
                error = new HeraldError(0, "network_error", `request to Herald failed: ${String(cause)}`, {
                    cause,
                });
            }
            const retryable = error.status === 429 || error.status === 503 || error.status === 0;
            if (!retryable || attempt >= this.#maxAttempts)
                throw error;
            const wait = error.retryAfter !== undefined ? error.retryAfter * 1000 : backoff(attempt);
            if (Date.now() - started + wait > this.#maxWaitMs)
                throw error;
            await new Promise((resolve) => setTimeout(resolve, wait));
        }
    }
}
/** 250 ms, doubling, at most 4 s. */
function backoff(attempt) {
    return Math.min(250 * 2 ** (attempt - 1), 4000);
}
function enc(segment) {
    return encodeURIComponent(segment).replace(/%3A/gi, ":").replace(/%40/g, "@");
}
/** 128 random bits as a UUID. */
export function newKey() {
    const c = globalThis.crypto;
    if (typeof c?.randomUUID === "function")
        return c.randomUUID();
    const bytes = new Uint8Array(16);
    c.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
