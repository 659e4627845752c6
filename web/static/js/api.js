// The REST API, as the CLI uses it: same routes, authenticated by the session cookie, with
// the session's CSRF token on every request that changes something.

const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** The daemon is older than this page: the route does not exist there. */
  get unsupported() {
    return this.status === 404 && this.code === "not_found" && this.message.startsWith("no such route");
  }
}

// Once the person signs out, a request of the page answered 401 is that sign-out, not a
// session that ended by itself: the sign-out's own page (the login form) follows.
let signingOut = false;
for (const form of document.querySelectorAll('form[action="/logout"]')) {
  form.addEventListener("submit", () => {
    signingOut = true;
  });
}

/** Go to the login page, saying that the session has ended, and come back here after. */
export function signIn() {
  if (signingOut) return;
  const next = location.pathname + location.search;
  location.assign(`/login?next=${encodeURIComponent(next)}&ended=1`);
}

/** Call the API; resolve to its JSON, or reject with an ApiError a person can read. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError("dployr cannot be reached right now. It may be restarting; try again in a moment.", 0, "offline");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (response.status === 401) {
    signIn();
    throw new ApiError("Your session has ended: sign in again.", 401, "unauthorized");
  }
  if (response.status === 403 && data?.error?.code === "csrf") {
    throw new ApiError("This page has expired: you signed in again since it was opened. Reload the page and try again.", 403, "csrf");
  }
  if (!response.ok) {
    const message = data?.error?.message ?? `dployr answered with an error (${response.status}).`;
    throw new ApiError(message, response.status, data?.error?.code ?? "");
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
export const put = (path, body) => api("PUT", path, body);
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path) => api("DELETE", path);

export const svc = (name) => `/services/${encodeURIComponent(name)}`;

/** A sentence that starts with a capital letter and ends with a full stop. */
export function sentence(text) {
  const t = String(text ?? "").trim();
  if (!t) return "";
  const first = t[0].toUpperCase() + t.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}
