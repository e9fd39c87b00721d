// The public JSON API, as the dashboard calls it: same origin, no token, and every failure turned
// into an ApiError carrying the API's own code, message and field so the page can show it.

/** An answer that is not a success: the API's `{"error": {code, message, field}}`, or a network failure. */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/**
 * Calls the API at `path` (relative to the page, so the dashboard also works behind a path prefix).
 * Resolves to `{data, ms}` (ms: round trip seen by the browser); rejects with an ApiError.
 */
export async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const started = performance.now();
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "network", `${method} ${path} failed: ${e.message}`, null);
  }
  const text = await response.text();
  const ms = performance.now() - started;
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const e = data && data.error;
    if (e && typeof e.message === "string") {
      throw new ApiError(response.status, e.code, e.message, e.field ?? null);
    }
    throw new ApiError(response.status, `http_${response.status}`, text || response.statusText, null);
  }
  if (data === null) {
    throw new ApiError(response.status, "invalid_response", `${method} ${path}: the answer is not JSON`, null);
  }
  return { data, ms };
}

/** Shows `err` (an ApiError or any Error) in the error box `box`. */
export function showError(box, err) {
  box.replaceChildren();
  const head = document.createElement("span");
  head.className = "code";
  const status = err.status ? `HTTP ${err.status} ` : "";
  head.textContent = `${status}${err.code ?? "error"}${err.field ? ` · field ${err.field}` : ""}`;
  const message = document.createElement("span");
  message.className = "message";
  message.textContent = err.message;
  box.append(head, ": ", message);
  box.dataset.code = err.code ?? "error";
  box.hidden = false;
}

/** Hides the error box `box`. */
export function clearError(box) {
  box.hidden = true;
  box.replaceChildren();
  delete box.dataset.code;
}
