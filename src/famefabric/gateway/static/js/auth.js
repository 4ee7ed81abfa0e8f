// Where the page keeps the bearer token.
//
// By default in sessionStorage: the token lives as long as this tab and is not
// written where other tabs or later visits find it. "Keep me signed in" puts it
// in localStorage instead, so new tabs and restarts stay signed in. Either store
// is readable by script on this origin, which is why the page runs no inline or
// third-party script (Content-Security-Policy) and sanitizes every reply.

const KEY = "fame.token";

export function loadToken() {
  return sessionStorage.getItem(KEY) ?? localStorage.getItem(KEY);
}

export function saveToken(token, { remember = false } = {}) {
  forgetToken();
  (remember ? localStorage : sessionStorage).setItem(KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

/**
 * A sign-in link carries a token in the URL fragment (#token=...), which browsers
 * never send to a server or in a Referer. Take it out of the address bar (and so
 * out of this history entry) at once and return it, or null.
 */
export function takeLinkToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (!token) return null;
  fragment.delete("token");
  const rest = fragment.toString();
  history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  return token.trim() || null;
}

/**
 * `make run` prints a one-time login link instead (#login=CODE): the code, not the
 * token, is in the address bar and the terminal; POST /v1/login exchanges it, once.
 * Take it out of the address bar at once and return it, or null.
 */
export function takeLoginCode() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const code = fragment.get("login");
  if (!code) return null;
  fragment.delete("login");
  const rest = fragment.toString();
  history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  return code.trim() || null;
}

/** Exchange a one-time login code for its token; throws Error with the gateway's message. */
export async function redeemLoginCode(code) {
  const response = await fetch("/v1/login", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ code }),
    cache: "no-store",
  });
  const body = await response.json().catch(() => null);
  if (!response.ok || typeof body?.token !== "string") {
    throw new Error(body?.error?.message || "the login link was not accepted: it works once; ask for a new one");
  }
  return body.token;
}
