/** An error answer of Herald (RFC 9457 problem+json), or a request that got no answer. */
export declare class HeraldError extends Error {
    /** The HTTP status; 0 when the request got no answer (network failure). */
    readonly status: number;
    /** The stable machine-readable code: `rate_limited`, `unavailable`, `invalid_name`, ... */
    readonly code: string;
    /** Seconds the answer asked to wait before retrying (429 and 503). */
    readonly retryAfter: number | undefined;
    /** The `request_id` of the answer, for support requests. */
    readonly requestId: string | undefined;
    constructor(status: number, code: string, message: string, options?: {
        retryAfter?: number;
        requestId?: string;
        cause?: unknown;
    });
}
/** Reads a non-2xx answer into a {@link HeraldError}. */
export declare function errorFrom(response: Response): Promise<HeraldError>;
