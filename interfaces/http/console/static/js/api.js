// The public HTTP API, as any client uses it: a bearer token on every request,
// a single-use stream ticket for each EventSource. The token lives in
// sessionStorage (this tab only) and never in a URL.

const TOKEN_KEY = "publishd.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An API error: `error` and `message` are the body's, `details` its optional details. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.error = body.error || "error";
    this.details = body.details ?? null;
  }
}

export function path(strings, ...values) {
  // A tagged template: each value is one path segment (or a file path: slashes kept).
  return strings.reduce((out, s, i) => {
    if (i === 0) return s;
    const v = String(values[i - 1]);
    return out + v.split("/").map(encodeURIComponent).join("/") + s;
  }, "");
}

export async function api(method, url, { body, params } = {}) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const s = q.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, { error: "network", message: `publishd did not answer (${e.message})` });
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text.slice(0, 300) };
  }
  if (!response.ok) throw new ApiError(response.status, data || {});
  return data;
}

/** A URL for an EventSource: a fresh single-use ticket, and where to resume. */
export async function streamUrl(url, after) {
  const { ticket } = await api("POST", "/stream-tickets");
  const q = new URLSearchParams({ ticket });
  if (after) q.set("after", String(after));
  return `${url}?${q}`;
}
