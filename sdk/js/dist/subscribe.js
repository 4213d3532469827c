import { HeraldError, errorFrom } from "./errors.js";
const GAP = "herald.gap";
const CLOSED = 2;
/** Subscribes to one or more channels. */
export function subscribe(options) {
    return new Stream(options);
}
class Stream {
    status = "connecting";
    lastEventId;
    #o;
    #handlers = new Map();
    #url;
    #cursorKey;
    #visibility;
    #es;
    #listening = new Set();
    #token;
    #refreshTimer;
    #retryTimer;
    #failures = 0;
    #generation = 0;
    #closed = false;
    #onVisibility = () => this.#visibilityChanged();
    constructor(options) {
        this.#o = options;
        this.#url = streamUrl(options);
        this.#cursorKey = options.cursorKey ?? `herald:cursor:${this.#url.href}`;
        this.lastEventId = options.lastEventId ?? options.cursorStore?.getItem(this.#cursorKey) ?? undefined;
        this.#token = options.token;
        const v = options.pauseWhenHidden;
        this.#visibility =
            v === true ? globalThis.document : v || undefined;
        this.#visibility?.addEventListener("visibilitychange", this.#onVisibility);
        queueMicrotask(() => {
            if (this.#closed)
                return; // closed before it started
            this.#setStatus("connecting");
            if (this.#visibility?.hidden)
                this.#setStatus("paused");
            else
                void this.#start();
        });
    }
    on(type, handler) {
        let set = this.#handlers.get(type);
        if (!set)
            this.#handlers.set(type, (set = new Set()));
        set.add(handler);
        if (this.#es)
            this.#listen(this.#es, type);
        return () => set.delete(handler);
    }
    close() {
        if (this.#closed)
            return;
        this.#closed = true;
        this.#stop();
        this.#visibility?.removeEventListener("visibilitychange", this.#onVisibility);
        this.#setStatus("closed");
    }
    /** Gets a token (unless `freshToken` says the current one was just fetched), then opens the
     * stream (or starts polling). */
    async #start(freshToken = false) {
        const generation = ++this.#generation;
        if (this.#o.getToken && !freshToken) {
            try {
                await this.#refreshToken();
            }
            catch (error) {
                if (generation !== this.#generation || this.#closed)
                    return;
                this.#o.onError?.(error);
                this.#retryLater();
                return;
            }
        }
        if (generation !== this.#generation || this.#closed)
            return;
        const Source = this.#o.EventSource ?? globalThis.EventSource;
        if (this.#o.transport === "poll" || !Source)
            void this.#poll(generation);
        else
            this.#open(Source);
    }
    #open(Source) {
        const url = new URL(this.#url);
        if (this.#token !== undefined)
            url.searchParams.set("token", this.#token);
        if (this.lastEventId !== undefined)
            url.searchParams.set("lastEventId", this.lastEventId);
        const es = new Source(url.href);
        this.#es = es;
        this.#listening = new Set();
        es.onopen = () => {
            if (this.#es !== es)
                return;
            this.#failures = 0;
            this.#setStatus("open");
        };
        es.onerror = (event) => {
            if (this.#es !== es)
                return;
            if (es.readyState === CLOSED) {
                // Refused (a 401 for an expired token, a 503 while the broker is down) or a network
                // failure the EventSource gave up on: open it again ourselves, with a fresh token and
                // the last cursor.
                es.close();
                this.#es = undefined;
                this.#o.onError?.(event);
                this.#retryLater();
            }
            else {
                // The EventSource reconnects by itself and sends Last-Event-ID.
                this.#setStatus("reconnecting");
            }
        };
        this.#listen(es, GAP);
        for (const type of this.#handlers.keys())
            this.#listen(es, type);
    }
    #listen(es, type) {
        if (this.#listening.has(type))
            return;
        this.#listening.add(type);
        es.addEventListener(type, (e) => {
            if (this.#es !== es)
                return;
            this.#deliver(type, e.data, e.lastEventId || undefined);
        });
    }
    #deliver(type, raw, id) {
        if (type === GAP) {
            const gap = parse(raw);
            this.#o.onGap?.(gap);
            this.#handlers.get(GAP)?.forEach((h) => h(gap, { id: "", event: GAP, raw }));
            return;
        }
        if (id !== undefined) {
            this.lastEventId = id;
            this.#o.cursorStore?.setItem(this.#cursorKey, id);
        }
        const handlers = this.#handlers.get(type);
        if (!handlers || handlers.size === 0)
            return;
        const data = parse(raw);
        const meta = { id: id ?? "", event: type, raw };
        for (const h of handlers)
            h(data, meta);
    }
    /** Polls the history API with `after=` (one channel per request). */
    async #poll(generation) {
        const channels = pollChannels(this.#url);
        const cursors = new Map(channels.map((c) => [c, channels.length === 1 ? this.lastEventId : undefined]));
        const doFetch = this.#o.fetch ?? globalThis.fetch.bind(globalThis);
        let first = true;
        while (generation === this.#generation && !this.#closed) {
            try {
                for (const channel of channels) {
                    // Without a cursor, start live: page to the end without delivering.
                    let live = cursors.get(channel) === undefined && first;
                    for (;;) {
                        const url = new URL(`${this.#url.origin}${basePath(this.#url)}/channels/${encodeURIComponent(channel)}/history`);
                        const after = cursors.get(channel);
                        if (after !== undefined)
                            url.searchParams.set("after", after);
                        url.searchParams.set("limit", "1000");
                        const headers = {};
                        if (this.#token !== undefined)
                            headers.authorization = `Bearer ${this.#token}`;
                        const response = await doFetch(url.href, { headers });
                        if (!response.ok)
                            throw await errorFrom(response);
                        const page = (await response.json());
                        if (generation !== this.#generation || this.#closed)
                            return;
                        if (page.gap && !live)
                            this.#o.onGap?.({ channel, reason: page.gap });
                        for (const e of page.events) {
                            cursors.set(channel, e.id);
                            if (live)
                                continue;
                            if (channels.length === 1) {
                                this.lastEventId = e.id;
                                this.#o.cursorStore?.setItem(this.#cursorKey, e.id);
                            }
                            const handlers = this.#handlers.get(e.event);
                            const raw = typeof e.data === "string" ? e.data : JSON.stringify(e.data);
                            handlers?.forEach((h) => h(e.data, { id: e.id, event: e.event, raw }));
                        }
                        if (page.events.length < 1000)
                            break;
                    }
                    live = false;
                }
                first = false;
                this.#failures = 0;
                this.#setStatus("open");
            }
            catch (error) {
                if (generation !== this.#generation || this.#closed)
                    return;
                this.#o.onError?.(error);
                this.#setStatus("reconnecting");
                if (error instanceof HeraldError && error.status === 401 && this.#o.getToken) {
                    await this.#refreshToken().catch(() => undefined);
                }
            }
            await new Promise((r) => setTimeout(r, this.#o.pollIntervalMs ?? 2000));
        }
    }
    /** Asks for a token and schedules the next refresh before it expires. */
    async #refreshToken() {
        const result = await this.#o.getToken();
        const { token, expiresAt } = typeof result === "string" ? { token: result, expiresAt: undefined } : result;
        this.#token = token;
        clearTimeout(this.#refreshTimer);
        const expiry = expiresAt !== undefined ? new Date(expiresAt).getTime() : jwtExpiry(token);
        if (expiry === undefined || Number.isNaN(expiry))
            return;
        const life = expiry - Date.now();
        const before = this.#o.refreshBeforeMs ?? Math.min(60_000, life / 4);
        // At least a second: a token that is already (nearly) expired must not spin the refresh.
        this.#refreshTimer = setTimeout(() => void this.#renew(), Math.max(1000, life - before));
    }
    /** A fresh token, then the stream again from the last cursor. */
    async #renew() {
        if (this.#closed || this.status === "paused")
            return;
        const generation = this.#generation;
        try {
            await this.#refreshToken();
        }
        catch (error) {
            this.#o.onError?.(error);
            this.#refreshTimer = setTimeout(() => void this.#renew(), 1000);
            return;
        }
        if (generation !== this.#generation || this.#closed || this.#o.transport === "poll" || !this.#es)
            return;
        // Reopen at once, from the last cursor: the server replays what arrived in between.
        this.#stop(false); // keep the refresh just scheduled for the new token
        void this.#start(true);
    }
    #retryLater() {
        this.#setStatus("reconnecting");
        const delay = Math.min(1000 * 2 ** this.#failures, 30_000) * (0.5 + Math.random() / 2);
        this.#failures++;
        clearTimeout(this.#retryTimer);
        this.#retryTimer = setTimeout(() => void this.#start(), delay);
    }
    /** Ends the current stream or poll loop and its retry timer; `close` and a pause end the
     * token refresh too. */
    #stop(refresh = true) {
        this.#generation++;
        clearTimeout(this.#retryTimer);
        if (refresh)
            clearTimeout(this.#refreshTimer);
        this.#es?.close();
        this.#es = undefined;
    }
    #visibilityChanged() {
        if (this.#closed)
            return;
        if (this.#visibility?.hidden) {
            this.#stop();
            this.#setStatus("paused");
        }
        else if (this.status === "paused") {
            this.#setStatus("connecting");
            void this.#start();
        }
    }
    #setStatus(status) {
        if (this.status === status && status !== "connecting")
            return;
        this.status = status;
        this.#o.onStatus?.(status);
    }
}
/** The stream's URL, without credentials or cursor. */
function streamUrl(o) {
    if (o.url !== undefined) {
        const url = new URL(o.url, globalThis.location?.href);
        url.searchParams.delete("token");
        url.searchParams.delete("lastEventId");
        return url;
    }
    if (o.baseUrl === undefined || o.tenant === undefined || o.channels === undefined) {
        throw new TypeError("subscribe needs `url`, or `baseUrl`, `tenant` and `channels`");
    }
    const channels = typeof o.channels === "string" ? [o.channels] : o.channels;
    const base = `${o.baseUrl.replace(/\/+$/, "")}/v1/${encodeURIComponent(o.tenant)}`;
    if (channels.length === 1)
        return new URL(`${base}/channels/${encodeURIComponent(channels[0])}/events`);
    const url = new URL(`${base}/events`);
    for (const c of channels)
        url.searchParams.append("channel", c);
    return url;
}
/** `/v1/<tenant>` of a stream URL. */
function basePath(url) {
    const m = /^(.*\/v1\/[^/]+)\//.exec(url.pathname);
    return m ? m[1] : url.pathname;
}
function pollChannels(url) {
    const m = /\/channels\/([^/]+)\/events$/.exec(url.pathname);
    return m ? [decodeURIComponent(m[1])] : url.searchParams.getAll("channel");
}
/** JSON when it parses, else the text itself (a published JSON string arrives as its text). */
function parse(raw) {
    try {
        return JSON.parse(raw);
    }
    catch {
        return raw;
    }
}
/** The `exp` of a JWT, in epoch milliseconds. */
function jwtExpiry(token) {
    try {
        const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
        const exp = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "="))).exp;
        return typeof exp === "number" ? exp * 1000 : undefined;
    }
    catch {
        return undefined;
    }
}
