// The HTTP API and the WebSocket, as the UI uses them. The API key lives in sessionStorage only
// (gone when the tab closes) and is sent as a Bearer token.

const KEY = "crowdex_key";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.detail = message;
  }
}

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
  },
  me: null, // GET /v1/me of the signed-in account, refreshed by the shell
};

// A read that could not reach the server is tried again this many times, a little later, before
// the view shows the error with its Retry button (a blip on a phone's network is common).
const GET_RETRIES = 1;
const GET_RETRY_DELAY_MS = 400;

export async function api(method, path, body, options = {}) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      const result = await request(method, path, body, options);
      // Every change may move the header's figures (cash, exchange time): tell the shell.
      if (method !== "GET") window.dispatchEvent(new Event("crowdex:changed"));
      return result;
    } catch (err) {
      if (method !== "GET" || err.status !== 0 || attempt >= GET_RETRIES) throw err;
      await new Promise((resolve) => { setTimeout(resolve, GET_RETRY_DELAY_MS); });
    }
  }
}

async function request(method, path, body, { anonymous = false, raw = false } = {}) {
  const headers = { Accept: "application/json" };
  if (session.key && !anonymous) headers.Authorization = `Bearer ${session.key}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, "network_error", "the server could not be reached");
  }
  if (raw && response.ok) return response;
  const text = await response.text();
  let payload = null;
  try { payload = text ? JSON.parse(text) : null; } catch { payload = null; }
  if (!response.ok) {
    const error = (payload && payload.error) || {};
    throw new ApiError(response.status, error.code || `http_${response.status}`,
      error.message || text.slice(0, 200) || response.statusText);
  }
  return payload;
}

export const get = (path, options) => api("GET", path, undefined, options);
export const post = (path, body = {}, options) => api("POST", path, body, options);
export const del = (path, options) => api("DELETE", path, undefined, options);
export const patch = (path, body, options) => api("PATCH", path, body, options);

/**
 * One WebSocket subscription that keeps itself fresh: it reconnects with backoff, and a gap in
 * a channel's sequence re-subscribes for a new snapshot (API.md). onData(data, message) gets the
 * full project view on both snapshots and updates; onState("live" | "connecting" | "offline").
 * Private channels (`orders`) pass { auth: true }: the socket then sends the session's API key
 * in an `auth` message first (browsers cannot set headers on a WebSocket); onError(message)
 * gets the server's `{"type": "error"}` messages.
 */
export class LiveChannel {
  constructor(channel, onData, onState = () => {}, { auth = false, onError = () => {} } = {}) {
    this.channel = channel;
    this.onData = onData;
    this.onState = onState;
    this.auth = auth;
    this.onError = onError;
    this.sequence = null;
    this.closed = false;
    this.retryMs = 500;
    this.connect();
  }

  connect() {
    if (this.closed) return;
    this.onState("connecting");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/v1/ws`);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.retryMs = 500;
      if (this.auth) socket.send(JSON.stringify({ op: "auth", api_key: session.key || "" }));
      this.subscribe();
    });
    socket.addEventListener("message", (event) => this.receive(event.data));
    socket.addEventListener("close", () => {
      if (this.closed) return;
      this.onState("offline");
      this.timer = setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 10_000);
    });
  }

  subscribe() {
    this.sequence = null;
    this.socket.send(JSON.stringify({ op: "subscribe", channels: [this.channel] }));
  }

  receive(text) {
    let message;
    try { message = JSON.parse(text); } catch { return; }
    if (message.type === "error") { this.onError(message); return; }
    if (message.channel !== this.channel) return;
    if (message.type === "snapshot") {
      this.sequence = message.sequence;
      this.onState("live");
      this.onData(message.data, message);
    } else if (message.type === "update") {
      if (this.sequence !== null && message.sequence !== this.sequence + 1) {
        this.socket.send(JSON.stringify({ op: "unsubscribe", channels: [this.channel] }));
        this.subscribe();
        return;
      }
      this.sequence = message.sequence;
      this.onData(message.data, message);
    }
  }

  /** Ask for a fresh snapshot (e.g. when a change is known to be missing from the updates). */
  resync() {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    this.socket.send(JSON.stringify({ op: "unsubscribe", channels: [this.channel] }));
    this.subscribe();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close();
  }
}

/** Load /v1/me for the stored key into session.me; a 401 drops the key. */
export async function refreshSession() {
  if (!session.key) { session.me = null; return false; }
  try {
    session.me = await get("/v1/me");
    return true;
  } catch (err) {
    if (err.status === 401) { session.key = null; session.me = null; }
    throw err;
  }
}
