/** An error answer of Herald (RFC 9457 problem+json), or a request that got no answer. */
export class HeraldError extends Error {
  /** The HTTP status; 0 when the request got no answer (network failure). */
  readonly status: number;
  /** The stable machine-readable code: `rate_limited`, `unavailable`, `invalid_name`, ... */
  readonly code: string;
  /** Seconds the answer asked to wait before retrying (429 and 503). */
  readonly retryAfter: number | undefined;
  /** The `request_id` of the answer, for support requests. */
  readonly requestId: string | undefined;

  constructor(
    status: number,
    code: string,
    message: string,
    options: { retryAfter?: number; requestId?: string; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "HeraldError";
    this.status = status;
    this.code = code;
    this.retryAfter = options.retryAfter;
    this.requestId = options.requestId;
  }
}

/** Reads a non-2xx answer into a {@link HeraldError}. */
export async function errorFrom(response: Response): Promise<HeraldError> {
  const header = response.headers.get("retry-after");
  const retryAfter = header !== null && /^\d+$/.test(header.trim()) ? Number(header) : undefined;
  let body: Record<string, unknown> = {};
  try {
    body = (await response.json()) as Record<string, unknown>;
  } catch {
    // Not problem+json (a proxy's error page): the status is all there is.
  }
  const code =
    typeof body.code === "string"
      ? body.code
      : response.status === 429
        ? "rate_limited"
        : response.status >= 502 && response.status <= 504
          ? "unavailable"
          : "http_error";
  const detail = typeof body.detail === "string" ? body.detail : response.statusText;
  const requestId =
    typeof body.request_id === "string"
      ? body.request_id
      : (response.headers.get("x-request-id") ?? undefined);
  return new HeraldError(response.status, code, `${response.status} ${code}: ${detail}`, {
    retryAfter,
    requestId,
  });
}
