// The one door to Herald's APIs. Every answer that is not a success becomes an ApiError
// `{status, code, field?, message}`, so that every view shows errors the same way: the problem's
// `detail` in words, and, when the detail names one of the form's fields, tied to that field.

export class ApiError extends Error {
  constructor({ status, code, field, message, retryAfter }) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.retryAfter = retryAfter;
  }
}

/** The field among `fields` that a problem's detail is about, if it names one. */
export function fieldOf(detail, fields = []) {
  const text = (detail || "").toLowerCase();
  return fields.find((f) => new RegExp(`\\b${f.replace(/_/g, "[_ ]")}\\b`).test(text));
}

function say(problem, status) {
  if (status === 429) {
    return "Too many attempts. Wait a minute and try again.";
  }
  if (problem && problem.detail) {
    // "invalid password: must be at least 10 characters" → "Password must be at least 10 characters."
    const d = problem.detail.replace(/^invalid ([a-z ]+): /, "$1 ");
    return d.charAt(0).toUpperCase() + d.slice(1) + (/[.!?]$/.test(d) ? "" : ".");
  }
  if (status >= 500) return "Herald is unavailable right now. Try again in a moment.";
  return `The request failed (${status}).`;
}

/**
 * `request(method, path, {body, fields, headers, text})`: JSON in, JSON out (or `null` for 204).
 * `fields` are the names of the form's fields, for tying an error to one of them.
 */
export async function request(method, path, { body, fields, headers = {}, text } = {}) {
  const init = { method, headers: { ...headers }, credentials: "same-origin" };
  if (text !== undefined) {
    init.headers["content-type"] = "text/plain";
    init.body = text;
  } else if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError({ status: 0, code: "network", message: "Herald cannot be reached. Check your connection." });
  }
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const parsed = type.includes("json") ? await response.json().catch(() => null) : null;
  if (response.ok) return parsed;
  throw new ApiError({
    status: response.status,
    code: (parsed && parsed.code) || "unknown",
    field: fieldOf(parsed && parsed.detail, fields),
    message: say(parsed, response.status),
    retryAfter: Number(response.headers.get("retry-after")) || undefined,
  });
}

export const api = {
  get: (path, opts) => request("GET", path, opts),
  post: (path, body, opts = {}) => request("POST", path, { ...opts, body }),
  patch: (path, body, opts = {}) => request("PATCH", path, { ...opts, body }),
  del: (path, opts) => request("DELETE", path, opts),
};

/** `/api/v1/tenants/{slug}` + `rest`, with every segment escaped. */
export const tenantPath = (slug, ...rest) =>
  ["/api/v1/tenants", slug, ...rest].map((s, i) => (i ? encodeURIComponent(s) : s)).join("/");

/** The edge URL of a channel's stream (this origin). */
export const streamUrl = (slug, channel) =>
  `${location.origin}/v1/${encodeURIComponent(slug)}/channels/${encodeURIComponent(channel)}/events`;
