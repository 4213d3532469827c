import { HeraldError, errorFrom } from "./errors.js";

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
export class Publisher {
  readonly #base: string;
  readonly #tenant: string;
  readonly #key: string;
  readonly #maxAttempts: number;
  readonly #maxWaitMs: number;
  readonly #fetch: typeof fetch;

  constructor(options: PublisherOptions) {
    this.#base = options.baseUrl.replace(/\/+$/, "");
    this.#tenant = options.tenant;
    this.#key = options.key;
    this.#maxAttempts = options.retry?.maxAttempts ?? 5;
    this.#maxWaitMs = options.retry?.maxWaitMs ?? 30_000;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** Publishes `data` (any JSON value) to `channel`. */
  publish(channel: string, data: unknown, options: PublishOptions = {}): Promise<Published> {
    const body: Record<string, unknown> = { data };
    if (options.event !== undefined) body.event = options.event;
    return this.#send("POST", `/channels/${enc(channel)}/events`, body, options.idempotencyKey);
  }

  /** Publishes 1 to 100 events, all or nothing, under one idempotency key. */
  async publishBatch(
    events: BatchEvent[],
    options: { idempotencyKey?: string } = {},
  ): Promise<Published[]> {
    const answer = await this.#send<{ results: Published[] }>(
      "POST",
      "/events",
      { events },
      options.idempotencyKey,
    );
    return answer.results;
  }

  /** Mints a subscriber token (the key needs the `subscribe` scope). */
  async mintToken(request: TokenRequest = {}): Promise<Token> {
    const body: Record<string, unknown> = { channels: request.channels ?? [] };
    if (request.ttlSeconds !== undefined) body.ttl_seconds = request.ttlSeconds;
    if (request.sub !== undefined) body.sub = request.sub;
    const answer = await this.#send<{ token: string; expires_at: string }>("POST", "/tokens", body);
    return { token: answer.token, expiresAt: answer.expires_at };
  }

  /** One page of history, oldest first: the events after `after` (from the oldest retained
   * without it). Page on with the last event's `id`. */
  history<T = unknown>(
    channel: string,
    options: { after?: string; limit?: number } = {},
  ): Promise<HistoryPage<T>> {
    const query = new URLSearchParams();
    if (options.after !== undefined) query.set("after", options.after);
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    const q = query.toString() ? `?${query}` : "";
    return this.#send("GET", `/channels/${enc(channel)}/history${q}`);
  }

  /** A channel's subscribers, last event id and retained count. */
  channel(channel: string): Promise<ChannelInfo> {
    return this.#send("GET", `/channels/${enc(channel)}`);
  }

  async #send<T>(method: string, path: string, body?: unknown, key?: string): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.#key}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (method === "POST" && path !== "/tokens") headers["idempotency-key"] = key ?? newKey();
    const url = `${this.#base}/v1/${enc(this.#tenant)}${path}`;
    const init: RequestInit = { method, headers };
    if (body !== undefined) init.body = JSON.stringify(body);
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      let error: HeraldError;
      try {
        const response = await this.#fetch(url, init);
        if (response.ok) return (await response.json()) as T;
        error = await errorFrom(response);
      } catch (cause) {
        if (cause instanceof HeraldError) throw cause;
        error = new HeraldError(0, "network_error", `request to Herald failed: ${String(cause)}`, {
          cause,
        });
      }
      const retryable = error.status === 429 || error.status === 503 || error.status === 0;
      if (!retryable || attempt >= this.#maxAttempts) throw error;
      const wait =
        error.retryAfter !== undefined ? error.retryAfter * 1000 : backoff(attempt);
      if (Date.now() - started + wait > this.#maxWaitMs) throw error;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

/** 250 ms, doubling, at most 4 s. */
function backoff(attempt: number): number {
  return Math.min(250 * 2 ** (attempt - 1), 4000);
}

function enc(segment: string): string {
  return encodeURIComponent(segment).replace(/%3A/gi, ":").replace(/%40/g, "@");
}

/** 128 random bits as a UUID. */
export function newKey(): string {
  const c = globalThis.crypto;
  if (typeof c?.randomUUID === "function") return c.randomUUID();
  const bytes = new Uint8Array(16);
  c.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
