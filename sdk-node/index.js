// Server-side helpers for a roomserver app's back end (Node.js >= 18): mint tokens, call the
// server API, verify webhooks. The same three as the Python `roomserver.admin`; the tests
// check each against the other and against a real server (tests/integration/test_server_sdks.py).
// No dependencies: node:crypto and the global fetch.
import { createHmac, timingSafeEqual } from "node:crypto";

export const ROLES = Object.freeze(["viewer", "host", "moderator", "admin"]);
export const SIGNATURE_HEADER = "x-roomserver-signature";
export const SIGNATURE_V2_HEADER = "x-roomserver-signature-v2";
/** PROTOCOL §5: accept a delivery within 5 minutes of its signed timestamp. */
export const WEBHOOK_TOLERANCE_S = 300;
// The admin token is minted anew this long before it expires.
const TOKEN_MARGIN_S = 30;

// ---- tokens -------------------------------------------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/**
 * An HS256 JWT the server accepts (PROTOCOL §1), with the claims roomserver's own minting
 * writes: iss = app, sub = user, name (default: the user id's first 32 characters), role,
 * exp; room, tier and tags when given.
 */
/**
 * @param {string} app
 * @param {string} secret
 * @param {string} user
 * @param {import("./index.js").Role} [role]
 * @param {import("./index.js").MintOptions} [options]
 * @returns {string}
 */
export function mintToken(app, secret, user, role = "viewer", options = {}) {
  const { room, ttlS = 3600, name, tier = 0, tags, now = Date.now() / 1000 } = options;
  for (const [what, value] of [["app", app], ["secret", secret], ["user", user]]) {
    if (typeof value !== "string" || !value) throw new TypeError(`${what} must be a non-empty string`);
  }
  if (!ROLES.includes(role)) throw new TypeError(`role must be one of ${ROLES.join(", ")}`);
  if (!Number.isFinite(ttlS) || ttlS <= 0) throw new TypeError("ttlS must be a positive number of seconds");
  const claims = {
    iss: app,
    sub: user,
    name: name ?? Array.from(user).slice(0, 32).join(""),
    role,
    exp: Math.floor(now + ttlS),
  };
  if (room != null) claims.room = room;
  if (tier) claims.tier = tier;
  if (tags && tags.length) claims.tags = tags;
  const signingInput = `${b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64url(JSON.stringify(claims))}`;
  const sig = createHmac("sha256", secret).update(signingInput).digest("base64url");
  return `${signingInput}.${sig}`;
}

// ---- the server API -----------------------------------------------------------------------

/** An error answer of the server API: `code` (PROTOCOL §2), `message`, HTTP `status`. */
export class ApiError extends Error {
  constructor(status, code, message = "", retryAfterMs = null) {
    super(message ? `${code}: ${message}` : code);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

const seg = (value) => encodeURIComponent(String(value));

/** The server's HTTP API with an admin token it mints itself. */
export class AdminClient {
  /** @param {import("./index.js").AdminClientOptions} options */
  constructor({ url, app, secret, user = "backend", tokenTtlS = 300, timeoutMs = 10000, fetch: fetchFn }) {
    if (typeof url !== "string" || !/^https?:\/\//.test(url)) throw new TypeError("url must be http(s)://host[:port]");
    this.url = url.replace(/\/+$/, "");
    this.app = app;
    this.user = user;
    this.tokenTtlS = Math.max(tokenTtlS, 2 * TOKEN_MARGIN_S);
    this.timeoutMs = timeoutMs;
    this._secret = secret;
    this._fetch = fetchFn || globalThis.fetch;
    this._token = "";
    this._tokenExp = 0;
  }

  /** The current admin token, minted anew shortly before it expires. */
  token() {
    const now = Date.now() / 1000;
    if (now >= this._tokenExp - TOKEN_MARGIN_S) {
      this._token = mintToken(this.app, this._secret, this.user, "admin", { ttlS: this.tokenTtlS, now });
      this._tokenExp = now + this.tokenTtlS;
    }
    return this._token;
  }

  /**
   * One authenticated JSON request; an error answer rejects with ApiError.
   * @param {string} method
   * @param {string} path
   * @param {{body?: unknown, query?: Record<string, string | number | null | undefined>}} [init]
   */
  async request(method, path, { body, query } = {}) {
    const url = new URL(this.url + path);
    for (const [k, v] of Object.entries(query || {})) if (v != null) url.searchParams.set(k, String(v));
    const headers = { Authorization: `Bearer ${this.token()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await this._fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    const text = await res.text();
    let data = {};
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        throw new ApiError(res.status, res.ok ? "internal" : statusCode(res.status), text.slice(0, 200));
      }
    }
    if (!res.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(res.status, err.code || statusCode(res.status), err.message || "", err.retry_after_ms ?? null);
    }
    return data;
  }

  /**
   * `POST /v1/rooms/{room}/ops/{op}`: a host/moderator op through its own handler (same
   * rules, events, reply data and cid idempotency as on a socket). `as`: act as that user.
   */
  /**
   * @param {string} room
   * @param {string} op
   * @param {Record<string, unknown>} [params]
   * @param {{as?: string}} [options]
   */
  op(room, op, params = {}, { as } = {}) {
    const body = { ...params };
    if (as != null) body.as = as;
    return this.request("POST", `/v1/rooms/${seg(room)}/ops/${seg(op)}`, { body });
  }

  /** @param {{id?: string, title?: string, mode?: "live" | "call", barrageCap?: number, scheduledAt?: number}} [room] */
  createRoom({ id, title = "", mode = "live", barrageCap, scheduledAt } = {}) {
    /** @type {Record<string, unknown>} */
    const body = { title, mode };
    if (id != null) body.id = id;
    if (barrageCap != null) body.barrage_cap = barrageCap;
    if (scheduledAt != null) body.scheduled_at = scheduledAt;
    return this.request("POST", "/v1/rooms", { body });
  }
  /** One page `{rooms, next}`; pass `next` as `after` for the following page. */
  /** @param {{after?: string, limit?: number}} [page] */
  listRooms({ after, limit = 100 } = {}) {
    return this.request("GET", "/v1/rooms", { query: { after: after || null, limit } });
  }
  getRoom(room) {
    return this.request("GET", `/v1/rooms/${seg(room)}`);
  }
  /** End the room's show (if live); the room and its history stay readable. */
  endRoom(room) {
    return this.request("DELETE", `/v1/rooms/${seg(room)}`);
  }
  /** Durable events after `since`: `{epoch, seq, events}` (`history_gone`: 410). */
  history(room, { since = 0, limit = 100 } = {}) {
    return this.request("GET", `/v1/rooms/${seg(room)}/history`, { query: { since, limit } });
  }
  /** Upcoming shows `{shows, next}`, soonest first. */
  /** @param {{after?: string, limit?: number}} [page] */
  schedule({ after, limit = 50 } = {}) {
    return this.request("GET", "/v1/schedule", { query: { after: after || null, limit } });
  }
  /** Move the room's next show (unix ms), or cancel it with null: `{room}` (re-arms its reminders). */
  reschedule(room, scheduledAt) {
    return this.request("PATCH", `/v1/rooms/${seg(room)}`, { body: { scheduled_at: scheduledAt } });
  }
  /**
   * The room's followers `{followers, count, next}` in id order; pass `next` as `after`.
   * @param {string} room
   * @param {{after?: string, limit?: number}} [page]
   */
  followers(room, { after, limit = 100 } = {}) {
    return this.request("GET", `/v1/rooms/${seg(room)}/followers`, { query: { after: after || null, limit } });
  }
  /** A custom durable event `custom.<ev>` to the room: `{seq}`. */
  publishEvent(room, ev, data = {}) {
    return this.request("POST", `/v1/rooms/${seg(room)}/events`, { body: { ev, data } });
  }
  lotteryRecord(room, lottery) {
    return this.request("GET", `/v1/rooms/${seg(room)}/lotteries/${seg(lottery)}`);
  }
  saleOrders(room, sale) {
    return this.request("GET", `/v1/rooms/${seg(room)}/sales/${seg(sale)}/orders`);
  }
}

function statusCode(status) {
  const byStatus = { 400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict",
    410: "history_gone", 413: "too_large", 429: "rate_limited", 503: "unavailable" };
  return byStatus[status] || "internal";
}

// ---- webhooks -------------------------------------------------------------------------------

/** The delivery is not from the server (bad or missing signature) or is too old. */
export class WebhookRejected extends Error {
  constructor(message) {
    super(message);
    this.name = "WebhookRejected";
  }
}

const hmacHex = (secret, data) => createHmac("sha256", secret).update(data).digest("hex");

function sameText(a, b) {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * The two signature headers the server sends for `body` at unix second `t` (as
 * roomserver/webhooks.py makes them): for a receiver's tests, or a relay.
 */
export function signWebhook(secret, body, t = Math.floor(Date.now() / 1000)) {
  const raw = Buffer.from(body);
  return {
    [SIGNATURE_HEADER]: `sha256=${hmacHex(secret, raw)}`,
    [SIGNATURE_V2_HEADER]: `t=${t},v1=${hmacHex(secret, Buffer.concat([Buffer.from(`${t}.`), raw]))}`,
  };
}

/** `X-Roomserver-Signature: sha256=<hex hmac(body)>`. */
export function checkSignatureV1(secret, body, header) {
  if (!sameText(signWebhook(secret, body, 0)[SIGNATURE_HEADER], String(header).trim())) {
    throw new WebhookRejected("bad signature");
  }
}

/**
 * `X-Roomserver-Signature-V2: t=<unix s>,v1=<hex hmac("<t>.<body>")>`: the one function to
 * change with the scheme. Several `v1=` entries (a rotated secret) match if any does; `t`
 * must be within `toleranceS` of now either way.
 */
export function checkSignatureV2(secret, body, header, { toleranceS = WEBHOOK_TOLERANCE_S, now = Date.now() / 1000 } = {}) {
  const fields = new Map();
  for (const part of String(header).split(",")) {
    const i = part.indexOf("=");
    if (i < 0) continue;
    const key = part.slice(0, i).trim();
    if (!fields.has(key)) fields.set(key, []);
    fields.get(key).push(part.slice(i + 1).trim());
  }
  const stamps = fields.get("t") || [];
  const macs = fields.get("v1") || [];
  if (stamps.length !== 1 || !/^[0-9]{1,12}$/.test(stamps[0]) || !macs.length) {
    throw new WebhookRejected("malformed X-Roomserver-Signature-V2 header");
  }
  const t = Number(stamps[0]);
  if (Math.abs(now - t) > toleranceS) {
    throw new WebhookRejected("the signature's timestamp is outside the tolerance (a replay?)");
  }
  const expected = signWebhook(secret, body, t)[SIGNATURE_V2_HEADER];
  if (!macs.some((mac) => sameText(expected, `t=${t},v1=${mac}`))) throw new WebhookRejected("bad signature");
}

/**
 * Check a delivery and return its JSON payload `{id, event, app, room, ts, data}`. `body`:
 * the raw bytes as received (a Buffer or string; re-encoding parsed JSON changes them).
 * `headers`: a plain object (any case) or a fetch `Headers`. The V2 signature is required;
 * `allowV1` accepts a delivery with only the V1 one, which a captured delivery replays for ever.
 */
/**
 * @param {string} secret
 * @param {import("./index.js").Body} body
 * @param {import("./index.js").HeaderBag} headers
 * @param {{toleranceS?: number, allowV1?: boolean, now?: number}} [options]
 * @returns {import("./index.js").WebhookPayload}
 */
export function verifyWebhook(secret, body, headers, { toleranceS = WEBHOOK_TOLERANCE_S, allowV1 = false, now = undefined } = {}) {
  const get = (name) => {
    if (typeof headers.get === "function") return headers.get(name) ?? undefined;
    const key = Object.keys(headers).find((k) => k.toLowerCase() === name);
    return key === undefined ? undefined : headers[key];
  };
  const v2 = get(SIGNATURE_V2_HEADER);
  const v1 = get(SIGNATURE_HEADER);
  if (v2 !== undefined) checkSignatureV2(secret, body, v2, { toleranceS, now });
  else if (allowV1 && v1 !== undefined) checkSignatureV1(secret, body, v1);
  else throw new WebhookRejected("no X-Roomserver-Signature-V2 header");
  let payload;
  try {
    payload = JSON.parse(Buffer.from(body).toString("utf8"));
  } catch {
    throw new WebhookRejected("the body is not JSON");
  }
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    throw new WebhookRejected("the body is not a JSON object");
  }
  return payload;
}
