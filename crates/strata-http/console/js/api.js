// The console's only way to the server: the public /v1 API with the pasted key.
//
// The key lives in this module's memory, and in sessionStorage only when the user asks to stay
// signed in for this tab (sessionStorage dies with the tab). Never a cookie, a URL, localStorage
// or a log line. Requests send no cookies and no referrer.

const SESSION_SLOT = 'strata.console.apiKey';
let apiKey = null;

/** Holds `key` for the following calls; `keepForTab` also puts it in sessionStorage. */
export function signIn(key, keepForTab) {
  apiKey = key;
  if (keepForTab) sessionStorage.setItem(SESSION_SLOT, key);
  else sessionStorage.removeItem(SESSION_SLOT);
}

/** Forgets the key (memory and sessionStorage). */
export function signOut() {
  apiKey = null;
  sessionStorage.removeItem(SESSION_SLOT);
}

/** The key kept for this tab, if any, taken back into memory; true when there is one. */
export function restore() {
  apiKey = sessionStorage.getItem(SESSION_SLOT);
  return apiKey !== null;
}

/** An error answer from the API, or a request that got no answer (`status` 0, code `NETWORK`). */
export class ApiError extends Error {
  constructor(status, code, message, requestId, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.details = details || {};
  }

  /** The server answered and recorded the outcome: a retry under the same key cannot do more. */
  get definitive() {
    if (this.status < 400 || this.status >= 500 || this.status === 429) return false;
    return this.code !== 'IDEMPOTENCY_CONFLICT';
  }
}

/** 16 random bytes as hex: an Idempotency-Key (works outside secure contexts too). */
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Calls the API. `query`: object of parameters (null/'' skipped, arrays repeat); `body`: JSON;
 * `org`: act inside that child (`X-Layers-Organization`); `idempotencyKey` for writes. Resolves
 * to the parsed JSON (null for an empty body); rejects with ApiError carrying the envelope's
 * message and request id. A `409 IDEMPOTENCY_CONFLICT` with `details.reason: "in_progress"`
 * (the first request under that key is still running) is retried under the same key.
 */
export async function call(method, path, { query, body, org, idempotencyKey } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v === null || v === undefined || v === '') continue;
    for (const one of Array.isArray(v) ? v : [v]) url.searchParams.append(k, one);
  }
  const headers = { Accept: 'application/json' };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  if (org) headers['X-Layers-Organization'] = org;
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const init = {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
    referrerPolicy: 'no-referrer',
  };
  for (let attempt = 0; ; attempt += 1) {
    let resp;
    try {
      resp = await fetch(url, init);
    } catch (e) {
      throw new ApiError(0, 'NETWORK', `The server could not be reached (${e.message}).`, null, {});
    }
    const text = await resp.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (resp.ok) return data;
    const env = (data && data.error) || {};
    const err = new ApiError(
      resp.status,
      env.code || `HTTP_${resp.status}`,
      env.message || `The server answered ${resp.status}.`,
      env.requestId || resp.headers.get('X-Request-Id'),
      env.details,
    );
    const inProgress = err.code === 'IDEMPOTENCY_CONFLICT' && err.details.reason === 'in_progress';
    if (inProgress && attempt < 8) {
      await sleep(150 * (attempt + 1));
      continue;
    }
    throw err;
  }
}

export const get = (path, opts) => call('GET', path, opts);

/**
 * One Idempotency-Key per opened form. Submitting again (a double click, a retry after a network
 * error or a 5xx) reuses it, so the server runs the write once and replays it after. Only after
 * an answer that settled the outcome (a 4xx the server recorded) does the next submit get a new
 * key, so a corrected form can go through. While a submit is in flight, others are ignored.
 */
export class FormKey {
  constructor() {
    this.key = newIdempotencyKey();
    /** True while a submit is in flight (handlers check it to ignore a second submit). */
    this.busy = false;
    this.settledFailure = false;
  }

  /** Runs `send(key)`; resolves to its result, or to undefined when a submit is already running. */
  async submit(send) {
    if (this.busy) return undefined;
    this.busy = true;
    if (this.settledFailure) {
      this.key = newIdempotencyKey();
      this.settledFailure = false;
    }
    try {
      return await send(this.key);
    } catch (e) {
      if (e instanceof ApiError && e.definitive) this.settledFailure = true;
      throw e;
    } finally {
      this.busy = false;
    }
  }

  /** After a success the form is cleared: the next fill is a new request with a new key. */
  renew() {
    this.key = newIdempotencyKey();
    this.settledFailure = false;
  }
}
