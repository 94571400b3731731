// roomserver JavaScript SDK: one ES module, no dependencies, no build step.
//
//   import { RoomClient } from "/sdk/roomserver.js";
//   const client = new RoomClient({ url: "https://live.example.com", token });
//   await client.connect();
//   const { room } = await client.join("r1");
//   client.on("barrage", (msg) => console.log(msg.user.name, msg.text));
//   await client.sendBarrage("r1", "hello");
//
// Wire contract: PROTOCOL.md (v1). Types: roomserver.d.ts next to this file.
//
// What the client does for you, and why:
// - Requests are promises; replies are matched by `id`. Errors reject with a RoomError
//   carrying the protocol `code` (and `retryAfterMs` where a retry can succeed).
// - Durable events carry a per-room `seq`. The client drops duplicates, and on a gap holds
//   the later events back, asks the server to replay (`room.resume`) and delivers in order,
//   so listeners see every durable event exactly once, in order.
// - The socket reconnects with jittered exponential backoff and resumes every joined room
//   from its last seq. Requests made meanwhile wait until every room is resumed (or joined
//   again): sent earlier, the server would answer them `not_joined`. A socket whose rooms
//   cannot be restored (`unavailable`) is closed and counts as a failed attempt. When the
//   server's history cannot cover the gap (`history_gone`, or an epoch change) the client
//   joins again and emits a local `resync` event with the fresh snapshot: the app must then
//   rebuild its view from that snapshot.
// - Close codes (PROTOCOL §2): 4001 token expired → a new token from `tokenProvider`, then
//   reconnect; 4003 kicked → no reconnect; 4008 slow consumer and 1001 draining → reconnect
//   and resume; 4029 too many connections → reconnect only after a long pause.
// - Ops that take a `cid` are idempotent on the server: their methods (sendBarrage, sendGift,
//   buy, claimCoupon) generate one when the caller gives none and reuse it on every retry, so
//   a purchase retried after a dropped connection can never buy twice. `unavailable` (and a
//   timeout) means the outcome is unknown: the op may have been done. Retry with the same
//   cid (`err.cid`): the server answers a known cid with its first reply.

/** Error codes of PROTOCOL §2, each with a message fit to show to an end user. */
export const ERROR_MESSAGES = Object.freeze({
  bad_request: "That request was not valid.",
  unauthorized: "Your session is not valid any more. Please sign in again.",
  forbidden: "You are not allowed to do that here.",
  not_found: "That no longer exists.",
  not_joined: "You are not in this room yet.",
  rate_limited: "You are going too fast. Please wait a moment.",
  muted: "You have been muted in this room.",
  blocked_content: "Your message contains a word that is not allowed here.",
  sold_out: "Sold out!",
  limit_reached: "You have reached the limit for this item.",
  not_open: "This is not open right now.",
  conflict: "That was already done.",
  history_gone: "The room was reset; reloading it.",
  too_large: "That message is too large.",
  unavailable: "The service is busy or unreachable. Please try again.",
  internal: "Something went wrong on the server.",
});

/** WebSocket close codes of PROTOCOL §2. */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001, // server draining: reconnect (elsewhere) and resume
  ABNORMAL: 1006,
  TOO_LARGE: 1009,
  TOKEN_EXPIRED: 4001,
  KICKED: 4003,
  SLOW_CONSUMER: 4008,
  TOO_MANY_CONNECTIONS: 4029,
});

const CLOSE_MESSAGES = {
  1001: "The server is restarting; reconnecting.",
  1006: "Connection lost; reconnecting.",
  1009: "A message was too large; reconnecting.",
  4001: "Your session expired.",
  4003: "You were removed from this room.",
  4008: "The connection fell behind; catching up.",
  4029: "Too many open connections for this account.",
};

/** A human sentence for a WebSocket close code. */
export function closeMessage(code) {
  return CLOSE_MESSAGES[code] || `Disconnected (code ${code}).`;
}

/** An op (or a WHIP/WHEP request) failed with a protocol error code. */
export class RoomError extends Error {
  /**
   * @param {string} code protocol error code (PROTOCOL §2)
   * @param {string} [message] the server's message
   * @param {{retryAfterMs?: number, op?: string, room?: string, status?: number, cid?: string}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message || ERROR_MESSAGES[code] || code);
    this.name = "RoomError";
    this.code = code;
    this.retryAfterMs = extra.retryAfterMs ?? null;
    this.op = extra.op ?? null;
    this.room = extra.room ?? null;
    this.status = extra.status ?? null;
    // The op's idempotency key: after `unavailable` retry with it (the op may have been done).
    this.cid = extra.cid ?? null;
  }

  /** The message to show an end user (not the server's technical one). */
  get userMessage() {
    return ERROR_MESSAGES[this.code] || this.message;
  }
}

/** A fresh idempotency key (≤ 64 chars). */
export function newCid() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  let s = "";
  for (let i = 0; i < 4; i++) s += Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, "0");
  return s;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const DEFAULTS = {
  requestTimeoutMs: 10_000,
  minReconnectDelayMs: 300,
  maxReconnectDelayMs: 10_000,
  maxReconnectAttempts: 30,
  tooManyConnectionsDelayMs: 30_000,
  // After a gap's resume was answered, how long the hole may stay open before re-joining.
  gapTimeoutMs: 3_000,
};

/** Turn `http(s)://host[/prefix]`, `ws(s)://host[/prefix]/v1/ws` or a relative path into both URLs. */
function endpoints(url) {
  const here = globalThis.location ? globalThis.location.href : undefined;
  const u = new URL(url || "/", here);
  if (u.protocol === "ws:") u.protocol = "http:";
  if (u.protocol === "wss:") u.protocol = "https:";
  let base = u.pathname.replace(/\/v1\/ws\/?$/, "").replace(/\/+$/, "");
  const http = `${u.origin}${base}`;
  const ws = `${u.protocol === "https:" ? "wss:" : "ws:"}//${u.host}${base}/v1/ws`;
  return { http, ws };
}

/**
 * A connection to a roomserver: requests, events, rooms, reconnects.
 * See roomserver.d.ts for the full typed surface.
 */
export class RoomClient {
  /**
   * `url`: server base URL (http(s)://host) or its /v1/ws URL, default this page's origin;
   * `token`: a JWT minted by your app's back end; `tokenProvider`: called for a fresh token
   * (expiry, 401). The rest: roomserver.d.ts.
   * @param {import("./roomserver.js").RoomClientOptions} [options]
   */
  constructor(options = {}) {
    this.options = { ...DEFAULTS, ...options };
    const ep = endpoints(options.url);
    this.httpUrl = ep.http;
    this.wsUrl = ep.ws;
    this.token = options.token || null;
    this.tokenProvider = options.tokenProvider || null;
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    this.fetch = options.fetch || globalThis.fetch.bind(globalThis);
    /** @type {"idle"|"connecting"|"open"|"reconnecting"|"closed"} */
    this.state = "idle";
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map();
    this._listeners = new Map();
    this._rooms = new Map();
    this._attempt = 0;
    this._closedByUser = false;
    this._reconnectTimer = null;
    this._openWaiters = [];
    this._handles = new Map();
  }

  /**
   * A handle bound to one room: `.on()` delivers only that room's events, and the op
   * methods take no room argument (`client.room("r1").sendBarrage("hi")`). One handle per
   * room id: calling `room(id)` again returns the same object. Getting a handle does not
   * join the room; `.join()` does.
   * @param {string} id
   * @returns {Room}
   */
  room(id) {
    if (typeof id !== "string" || !id) throw new RoomError("bad_request", "room id must be a non-empty string");
    let handle = this._handles.get(id);
    if (!handle) {
      handle = new Room(this, id);
      this._handles.set(id, handle);
    }
    return handle;
  }

  // ---- events ---------------------------------------------------------------------------

  /**
   * Subscribe to a server event (`"barrage"`, `"sale.opened"`, … or `"*"` for all) or a
   * local one (`"state"`, `"reconnecting"`, `"reconnected"`, `"disconnected"`, `"resync"`,
   * `"gap"`, `"error"`). The listener gets `(data, meta)`; meta = `{ev, room, seq, ts}`.
   * @returns {() => void} unsubscribe
   */
  on(ev, fn) {
    if (!this._listeners.has(ev)) this._listeners.set(ev, new Set());
    this._listeners.get(ev).add(fn);
    return () => this.off(ev, fn);
  }

  /** Like `on`, for one call only. */
  once(ev, fn) {
    const off = this.on(ev, (data, meta) => {
      off();
      fn(data, meta);
    });
    return off;
  }

  off(ev, fn) {
    const set = this._listeners.get(ev);
    if (set) set.delete(fn);
  }

  _emit(ev, data, meta) {
    for (const key of [ev, "*"]) {
      const set = this._listeners.get(key);
      if (!set) continue;
      for (const fn of [...set]) {
        try {
          fn(data, meta);
        } catch (err) {
          // A broken listener must not break delivery to the others (nor the socket).
          console.error(`roomserver: listener for ${ev} threw`, err);
        }
      }
    }
  }

  _local(ev, data) {
    this._emit(ev, data, { ev, room: data && data.room, seq: null, ts: Date.now(), local: true });
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._local("state", { state });
    if (state === "open") {
      for (const w of this._openWaiters.splice(0)) w.resolve();
    } else if (state === "closed") {
      for (const w of this._openWaiters.splice(0)) w.reject(new RoomError("unavailable", "client closed"));
    }
  }

  // ---- connection ---------------------------------------------------------------------------

  /** Open the socket. Resolves once it is open; rejects with a RoomError if it cannot open. */
  async connect() {
    if (this.state === "open") return;
    this._closedByUser = false;
    if (!this.token && this.tokenProvider) this.token = await this.tokenProvider();
    if (!this.token) throw new RoomError("unauthorized", "no token: pass `token` or `tokenProvider`");
    this._setState("connecting");
    try {
      await this._open();
    } catch (err) {
      if (err.code === "unauthorized" && this.tokenProvider) {
        this.token = await this.tokenProvider();
        await this._open();
      } else {
        this._setState("closed");
        throw err;
      }
    }
    this._attempt = 0;
    this._setState("open");
  }

  /** Close for good (no reconnect). Pending requests reject with `unavailable`. */
  close() {
    this._closedByUser = true;
    clearTimeout(this._reconnectTimer);
    if (this._ws) this._ws.close(1000, "client closed");
    this._failPending(new RoomError("unavailable", "client closed"));
    this._setState("closed");
  }

  /** Replace the token (used on the next reconnect and for WHIP/WHEP). */
  setToken(token) {
    this.token = token;
  }

  _open() {
    return new Promise((resolve, reject) => {
      const ws = new this.WebSocket(`${this.wsUrl}?token=${encodeURIComponent(this.token)}`);
      this._ws = ws;
      let opened = false;
      ws.onopen = () => {
        // "open" (and requests) only after connect() or the rooms' restore says so.
        opened = true;
        resolve();
      };
      ws.onmessage = (e) => this._onFrame(e.data);
      ws.onclose = (e) => {
        if (this._ws !== ws) return;
        this._ws = null;
        this._failPending(new RoomError("unavailable", "connection lost"));
        if (!opened) {
          // The browser hides the HTTP status of a refused upgrade: ask the server why.
          this._diagnose().then(reject, reject);
          return;
        }
        this._onClose(e.code, e.reason);
      };
    });
  }

  /** After an upgrade failed: a plain GET of /v1/ws says 401 for a bad token. */
  async _diagnose() {
    try {
      const res = await this.fetch(`${this.httpUrl}/v1/ws?token=${encodeURIComponent(this.token)}`);
      if (res.status === 401) return new RoomError("unauthorized", await errorText(res), { status: 401 });
      if (res.status === 503) return new RoomError("unavailable", "server is draining", { status: 503 });
    } catch {
      // unreachable: fall through
    }
    return new RoomError("unavailable", "cannot reach the server");
  }

  _onClose(code, reason) {
    this._local("disconnected", { code, reason, message: closeMessage(code) });
    if (this._closedByUser) {
      this._setState("closed");
      return;
    }
    if (code === CloseCode.KICKED) {
      // Kicked: the server bars this user for a while; reconnecting would only be refused.
      this._rooms.clear();
      this._setState("closed");
      return;
    }
    this._scheduleReconnect(code);
  }

  _scheduleReconnect(code) {
    const o = this.options;
    this._attempt += 1;
    if (this._attempt > o.maxReconnectAttempts) {
      this._setState("closed");
      this._local("error", { error: new RoomError("unavailable", "gave up reconnecting") });
      return;
    }
    let delay = Math.min(o.maxReconnectDelayMs, o.minReconnectDelayMs * 2 ** (this._attempt - 1));
    delay = delay / 2 + Math.random() * (delay / 2);
    if (code === CloseCode.TOO_MANY_CONNECTIONS) delay = Math.max(delay, o.tooManyConnectionsDelayMs);
    if (code === CloseCode.GOING_AWAY && this._attempt === 1) delay = Math.random() * 200;
    this._setState("reconnecting");
    this._local("reconnecting", { attempt: this._attempt, delayMs: Math.round(delay), code });
    this._reconnectTimer = setTimeout(() => this._reconnect(code), delay);
  }

  async _reconnect(code) {
    if (this._closedByUser) return;
    try {
      if (code === CloseCode.TOKEN_EXPIRED) await this._refreshToken();
      this._setState("connecting");
      try {
        await this._open();
      } catch (err) {
        if (err.code !== "unauthorized" || !this.tokenProvider) throw err;
        await this._refreshToken();
        await this._open();
      }
    } catch (err) {
      if (err.code === "unauthorized" && !this.tokenProvider) {
        this._setState("closed");
        this._local("error", { error: err });
        return;
      }
      this._scheduleReconnect(code);
      return;
    }
    if (!(await this._restoreRooms(this._ws))) return; // its close schedules the next attempt
    this._attempt = 0;
    this._setState("open");
    this._local("reconnected", { rooms: [...this._rooms.keys()] });
  }

  async _refreshToken() {
    if (!this.tokenProvider) throw new RoomError("unauthorized", "token expired and no tokenProvider");
    this.token = await this.tokenProvider();
  }

  /**
   * Resume (or re-join) every room on a new socket before app requests may use it: the
   * server answers an op for a room the socket has not joined yet with `not_joined`.
   * Resolves false when the socket closed meanwhile or a room could not be restored (then
   * the socket is closed, and its close schedules the next attempt with backoff).
   */
  async _restoreRooms(ws) {
    if (!ws) return false; // closed already: its close scheduled the next attempt
    const results = await Promise.all([...this._rooms.keys()].map((room) => this._resumeRoom(room)));
    if (this._ws !== ws || this._closedByUser) return false;
    const failed = results.find((err) => err);
    if (!failed) return true;
    this._local("error", { error: failed });
    ws.close(CloseCode.NORMAL, "rooms not restored");
    return false;
  }

  /**
   * Resume one room from its last seq; re-join (local `resync`) when history cannot cover it.
   * Resolves null when the room is restored (or dropped: `forbidden`, `not_found`), else the
   * error that left it not joined.
   */
  async _resumeRoom(room) {
    const st = this._rooms.get(room);
    if (!st) return null;
    if (st.seq === null || !st.epoch) return this._rejoin(room);
    st.resuming = true;
    try {
      await this._call("room.resume", room, { since: st.seq, epoch: st.epoch });
      this._armGapTimer(room);
      return null;
    } catch (err) {
      if (err.code === "history_gone") return this._rejoin(room);
      return this._roomFailed(room, err);
    } finally {
      st.resuming = false;
    }
  }

  async _rejoin(room) {
    const st = this._rooms.get(room);
    if (!st) return null;
    st.seq = null; // hold events until the new snapshot says where we stand
    try {
      const snap = await this._call("room.join", room, {});
      this._adoptSnapshot(room, snap);
      this._local("resync", { room, snapshot: snap });
      return null;
    } catch (err) {
      return this._roomFailed(room, err);
    }
  }

  /** A room the server refuses is dropped (null); any other failure is returned for a retry. */
  _roomFailed(room, err) {
    if (err.code === "forbidden" || err.code === "not_found") {
      this._rooms.delete(room);
      this._local("error", { room, error: err });
      return null;
    }
    return err;
  }

  _whenOpen(timeoutMs) {
    if (this.state === "open") return Promise.resolve();
    if (this.state === "closed" || this.state === "idle")
      return Promise.reject(new RoomError("unavailable", "not connected: call connect() first"));
    return new Promise((resolve, reject) => {
      const w = { resolve, reject };
      this._openWaiters.push(w);
      setTimeout(() => {
        const i = this._openWaiters.indexOf(w);
        if (i >= 0) {
          this._openWaiters.splice(i, 1);
          reject(new RoomError("unavailable", "still reconnecting"));
        }
      }, timeoutMs);
    });
  }

  _failPending(err) {
    for (const p of this._pending.values()) {
      clearTimeout(p.timer);
      p.reject(new RoomError(err.code, err.message, { op: p.op, room: p.room, cid: p.cid }));
    }
    this._pending.clear();
  }

  // ---- requests -----------------------------------------------------------------------------

  /**
   * Send an op and wait for its reply's `data`. Waits for a reconnect in progress.
   * @param {string} op e.g. "barrage.send"
   * @param {string|null} room
   * @param {object} [params]
   * @param {{timeoutMs?: number}} [opts]
   */
  async request(op, room, params = {}, opts = {}) {
    const timeoutMs = opts.timeoutMs ?? this.options.requestTimeoutMs;
    await this._whenOpen(timeoutMs);
    return this._call(op, room, params, timeoutMs);
  }

  /** Send on the current socket now (no waiting for "open": the rooms' restore uses it). */
  _call(op, room, params, timeoutMs = this.options.requestTimeoutMs) {
    const id = this._nextId++;
    const frame = { ...params, id, op };
    if (room != null) frame.room = room;
    const cid = params.cid ?? null;
    return new Promise((resolve, reject) => {
      if (!this._ws) {
        reject(new RoomError("unavailable", "not connected", { op, room, cid }));
        return;
      }
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new RoomError("unavailable", `${op} timed out`, { op, room, cid }));
      }, timeoutMs);
      this._pending.set(id, { resolve, reject, timer, op, room, cid });
      try {
        this._ws.send(JSON.stringify(frame));
      } catch (err) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(new RoomError("unavailable", String(err), { op, room, cid }));
      }
    });
  }

  /** Fire and forget (no `id`, no reply). Dropped silently while disconnected. */
  send(op, room, params = {}) {
    if (this.state !== "open" || !this._ws) return false;
    /** @type {Record<string, unknown>} */
    const frame = { ...params, op };
    if (room != null) frame.room = room;
    this._ws.send(JSON.stringify(frame));
    return true;
  }

  /**
   * A request retried on `unavailable` (and on `rate_limited` with a short retry_after_ms),
   * always with the same params, so the op's `cid` makes the retries safe.
   */
  async _retrying(op, room, params, attempts = 4) {
    let last;
    for (let i = 0; i < attempts; i++) {
      try {
        return await this.request(op, room, params);
      } catch (err) {
        last = err;
        const wait =
          err.code === "unavailable"
            ? (err.retryAfterMs ?? 250 * 2 ** i)
            : err.code === "rate_limited" && err.retryAfterMs != null && err.retryAfterMs <= 2000
              ? err.retryAfterMs
              : null;
        if (wait === null || i === attempts - 1) throw err;
        await sleep(wait);
      }
    }
    throw last;
  }

  // ---- frames and events ----------------------------------------------------------------

  _onFrame(text) {
    let messages;
    try {
      messages = JSON.parse(text);
    } catch {
      return;
    }
    if (!Array.isArray(messages)) messages = [messages];
    for (const m of messages) {
      if (m && "re" in m) this._onReply(m);
      else if (m && m.ev) this._onEvent(m);
    }
  }

  _onReply(m) {
    const p = this._pending.get(m.re);
    if (!p) {
      if (m.ok === false) this._local("error", { error: toError(m.error, {}) });
      return;
    }
    this._pending.delete(m.re);
    clearTimeout(p.timer);
    if (m.ok) p.resolve(m.data ?? {});
    else p.reject(toError(m.error, p));
  }

  _onEvent(m) {
    const st = m.room != null ? this._rooms.get(m.room) : undefined;
    if (typeof m.seq !== "number" || !st) {
      this._deliver(m);
      return;
    }
    if (st.seq === null) {
      st.held.set(m.seq, m); // join or re-join in flight: sorted out by its snapshot
      return;
    }
    if (m.seq <= st.seq) return; // duplicate (replay overlap)
    if (m.seq === st.seq + 1) {
      st.seq = m.seq;
      this._deliver(m);
      this._drainHeld(m.room, st);
      return;
    }
    st.held.set(m.seq, m);
    if (!st.resuming) {
      this._local("gap", { room: m.room, from: st.seq + 1, to: m.seq - 1 });
      this._resumeRoom(m.room);
    }
  }

  _drainHeld(room, st) {
    while (st.held.size) {
      for (const seq of st.held.keys()) if (seq <= st.seq) st.held.delete(seq);
      const next = st.held.get(st.seq + 1);
      if (!next) break;
      st.held.delete(next.seq);
      st.seq = next.seq;
      this._deliver(next);
    }
    if (!st.held.size) clearTimeout(st.gapTimer);
  }

  /** After a gap's resume was answered, a hole that stays open means: start over from a snapshot. */
  _armGapTimer(room) {
    const st = this._rooms.get(room);
    if (!st || !st.held.size) return;
    clearTimeout(st.gapTimer);
    st.gapTimer = setTimeout(() => {
      const cur = this._rooms.get(room);
      if (cur && cur.held.size && cur.seq !== null) this._rejoin(room);
    }, this.options.gapTimeoutMs);
  }

  _deliver(m) {
    const st = m.room != null ? this._rooms.get(m.room) : undefined;
    if (st && m.ev === "media.publishers") st.publishers = m.data.publishers || [];
    this._emit(m.ev, m.data, { ev: m.ev, room: m.room, seq: m.seq ?? null, ts: m.ts });
  }

  _adoptSnapshot(room, snap) {
    const st = this._rooms.get(room);
    const r = snap.room || {};
    st.seq = typeof r.seq === "number" ? r.seq : 0;
    st.epoch = r.epoch || null;
    st.snapshot = snap;
    st.publishers = r.publishers || [];
    this._drainHeld(room, st);
  }

  // ---- rooms ----------------------------------------------------------------------------

  /** Join a room: resolves to the snapshot `{room: {...}}`; events flow from its `seq` on.
   * `opts.ref`: the share link's token that brought this viewer (`shareLink`); an invalid one
   * fails the join with `bad_request` and changes nothing (join again without it). */
  async join(room, opts = {}) {
    let st = this._rooms.get(room);
    if (!st) {
      st = { seq: null, epoch: null, held: new Map(), resuming: false, snapshot: null, publishers: [] };
      this._rooms.set(room, st);
    }
    st.seq = null;
    try {
      const snap = await this.request("room.join", room, opts.ref ? { ref: opts.ref } : {});
      this._adoptSnapshot(room, snap);
      return snap;
    } catch (err) {
      this._rooms.delete(room);
      throw err;
    }
  }

  async leave(room) {
    const st = this._rooms.get(room);
    if (st) clearTimeout(st.gapTimer);
    this._rooms.delete(room);
    return this.request("room.leave", room, {});
  }

  /** Resume explicitly from `since`/`epoch` (normally the client does this itself). */
  resume(room, since, epoch) {
    return this.request("room.resume", room, { since, epoch });
  }

  /** The last seq delivered for a joined room (null while joining). */
  lastSeq(room) {
    const st = this._rooms.get(room);
    return st ? st.seq : null;
  }

  /** The join snapshot of a joined room (refreshed on resync). */
  snapshot(room) {
    const st = this._rooms.get(room);
    return st ? st.snapshot : null;
  }

  /** The current `media.publishers` list of a joined room. */
  publishers(room) {
    const st = this._rooms.get(room);
    return st ? st.publishers : [];
  }

  /** The user id in the current token (read from its payload, not verified). */
  get user() {
    return tokenClaims(this.token).sub ?? null;
  }

  // ---- ops (PROTOCOL §3) --------------------------------------------------------------------

  ping() {
    return this.request("ping", null, {});
  }
  start(room, title) {
    return this.request("room.start", room, title == null ? {} : { title });
  }
  end(room) {
    return this.request("room.end", room, {});
  }
  /** `barrage.send`; retried safely with one cid. Resolves `{seq}` or `{seq:null, shed:true}`. */
  sendBarrage(room, text, { cid = newCid() } = {}) {
    return this._retrying("barrage.send", room, { text, cid }, 2);
  }
  sendLike(room, count = 1) {
    return this.request("like.send", room, { count });
  }
  sendGift(room, gift, count = 1, { cid = newCid() } = {}) {
    return this._retrying("gift.send", room, { gift, count, cid });
  }
  pinProduct(room, product) {
    return this.request("product.pin", room, { product });
  }
  unpinProduct(room, productId) {
    return this.request("product.unpin", room, productId ? { product: { id: productId } } : {});
  }
  track(room, action, product) {
    return this.request("track", room, product ? { action, product } : { action });
  }

  /** A signed share link of the room naming this user: `{ref, url, expires_at}` (issue 12). */
  shareLink(room) {
    return this.request("share.link", room, {});
  }

  createLottery(room, params) {
    return this.request("lottery.create", room, params);
  }
  enterLottery(room, lottery) {
    return this.request("lottery.enter", room, { lottery });
  }
  drawLottery(room, lottery) {
    return this.request("lottery.draw", room, { lottery });
  }
  /** `GET /v1/rooms/{room}/lotteries/{id}`: seed, seed_hash, sorted entrants, winners. */
  lotteryRecord(room, lottery) {
    return this.http("GET", `/v1/rooms/${encodeURIComponent(room)}/lotteries/${encodeURIComponent(lottery)}`);
  }

  createSale(room, params) {
    return this.request("sale.create", room, params);
  }
  /**
   * `sale.buy`: a cid is generated once per purchase and reused on every retry, so a
   * retried purchase returns the first order instead of buying twice.
   */
  buy(room, sale, qty = 1, { cid = newCid(), attempts = 4 } = {}) {
    return this._retrying("sale.buy", room, { sale, qty, cid }, attempts);
  }

  issueCoupon(room, params) {
    return this.request("coupon.issue", room, params);
  }
  claimCoupon(room, coupon, { cid = newCid(), attempts = 4 } = {}) {
    return this._retrying("coupon.claim", room, { coupon, cid }, attempts);
  }
  /** Spend loyalty points on a reward of the app's catalog (no room: points are the app's). */
  redeemPoints(reward, { cid = newCid(), attempts = 4 } = {}) {
    return this._retrying("points.redeem", null, { reward, cid }, attempts);
  }
  sendRedPacket(room, params) {
    return this.request("redpacket.send", room, params);
  }
  grabRedPacket(room, packet) {
    return this.request("redpacket.grab", room, { packet });
  }

  createPoll(room, params) {
    return this.request("poll.create", room, params);
  }
  vote(room, poll, option) {
    return this.request("poll.vote", room, { poll, option });
  }
  /** The quality layer this user's plays of `publisher` get: "high", "low" or "auto"
   * (the server's estimate); a publisher's video track lists its `layers` (issue 14). */
  setMediaLayer(room, publisher, layer) {
    return this.request("media.layer", room, { publisher, layer });
  }
  announce(room, text, countdownTo) {
    return this.request("room.announce", room, countdownTo ? { text, countdown_to: countdownTo } : { text });
  }

  mute(room, user, durationS) {
    return this.request("mod.mute", room, durationS ? { user, duration_s: durationS } : { user });
  }
  unmute(room, user) {
    return this.request("mod.unmute", room, { user });
  }
  kick(room, user, durationS) {
    return this.request("mod.kick", room, durationS ? { user, duration_s: durationS } : { user });
  }
  setSlowMode(room, intervalS) {
    return this.request("mod.slow", room, { interval_s: intervalS });
  }
  setBannedWords(room, { add = [], remove = [] } = {}) {
    return this.request("mod.words", room, { add, remove });
  }

  // The room assistant (host and moderators; docs/assistant.md).
  /** @param {string} room @param {{enabled?: boolean, products?: string[]}} settings */
  setAssistant(room, { enabled, products }) {
    const params = {};
    if (enabled !== undefined) params.enabled = enabled;
    if (products !== undefined) params.products = products;
    return this.request("assistant.set", room, params);
  }
  answerQuestions(room, text, key) {
    return this.request("assistant.reply", room, key ? { text, key } : { text });
  }
  markAnswerWrong(room, questionSeq, note) {
    return this.request("assistant.wrong", room, note ? { question_seq: questionSeq, note } : { question_seq: questionSeq });
  }

  requestCohost(room) {
    return this.request("cohost.request", room, {});
  }
  inviteCohost(room, user) {
    return this.request("cohost.invite", room, { user });
  }
  /** Host: `{request}` (or `{user}`) of a pending request; invited viewer: `{}` or `{user: self}`. */
  acceptCohost(room, target = {}) {
    return this.request("cohost.accept", room, target);
  }
  rejectCohost(room, target = {}) {
    return this.request("cohost.reject", room, target);
  }
  endCohost(room, user) {
    return this.request("cohost.end", room, { user });
  }

  invitePk(room, targetRoom, durationS = 300) {
    return this.request("pk.invite", room, { target_room: targetRoom, duration_s: durationS });
  }
  acceptPk(room, pk) {
    return this.request("pk.accept", room, { pk });
  }
  rejectPk(room, pk) {
    return this.request("pk.reject", room, { pk });
  }
  endPk(room, pk) {
    return this.request("pk.end", room, { pk });
  }

  // ---- HTTP and media ---------------------------------------------------------------------

  /** An authenticated JSON request to the server's HTTP API (PROTOCOL §5). */
  async http(method, path, body) {
    const res = await this._authedFetch(path, {
      method,
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw await httpError(res);
    return res.status === 204 ? {} : res.json();
  }

  /** fetch with the Bearer token; on 401 get a new token once and retry. */
  async _authedFetch(path, init) {
    const url = new URL(path, `${this.httpUrl}/`).href;
    const go = () =>
      this.fetch(url, { ...init, headers: { ...(init.headers || {}), Authorization: `Bearer ${this.token}` } });
    let res = await go();
    if (res.status === 401 && this.tokenProvider) {
      await this._refreshToken();
      res = await go();
    }
    return res;
  }

  /**
   * Publish a MediaStream with WHIP (PROTOCOL §4). Allowed for the room's host, admitted
   * co-hosts and anyone in a `call` room.
   * @returns {Promise<Publication>}
   */
  async publish(room, stream, options = {}) {
    const path = `/v1/rooms/${encodeURIComponent(room)}/whip`;
    const pc = new RTCPeerConnection(await this._rtcConfig(path, options));
    for (const track of stream.getTracks()) {
      pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
    // Quality layers (issue 14): a second, smaller encoding of the camera on its own m-line
    // after the first video one, named by `?layers=high,low` (the server cannot receive RIDs).
    const video = stream.getVideoTracks()[0];
    let low = null;
    if (options.layers && video) {
      const spec = options.layers === true ? {} : options.layers;
      low = video.clone();
      pc.addTransceiver(low, {
        direction: "sendonly",
        streams: [stream],
        sendEncodings: [
          { scaleResolutionDownBy: spec.scaleResolutionDownBy || 2, maxBitrate: spec.maxBitrate || 150000 },
        ],
      });
    }
    try {
      const location = await this._negotiate(pc, low ? `${path}?layers=high,low` : path);
      const publication = new Publication(this, pc, stream, location);
      publication.lowTrack = low;
      return publication;
    } catch (err) {
      pc.close();
      if (low) low.stop();
      throw err;
    }
  }

  /**
   * Play one publisher of a room with WHEP (default: the host).
   * @returns {Promise<Playback>}
   */
  async play(room, publisher, options = {}) {
    const path = `/v1/rooms/${encodeURIComponent(room)}/whep`;
    const pc = new RTCPeerConnection(await this._rtcConfig(path, options));
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    pc.ontrack = (e) => stream.addTrack(e.track);
    const q = publisher ? `?publisher=${encodeURIComponent(publisher)}` : "";
    try {
      const location = await this._negotiate(pc, path + q);
      return new Playback(this, pc, stream, location, publisher || null);
    } catch (err) {
      pc.close();
      throw err;
    }
  }

  /**
   * The RTCPeerConnection configuration: `options.rtcConfig`, and unless it names its own
   * `iceServers`, the TURN servers (with credentials minted for this token) that the WHIP/WHEP
   * endpoint announces in `Link: <turn:…>; rel="ice-server"` headers (RFC 9725 §4.6). They are
   * asked for with OPTIONS before the peer connection exists, because the offer is sent once,
   * complete, so relay candidates must be gathered before it. No TURN: an empty list.
   */
  async _rtcConfig(path, options) {
    const config = { ...(options.rtcConfig || {}) };
    if (config.iceServers) return config;
    try {
      const res = await this._authedFetch(path, { method: "OPTIONS" });
      config.iceServers = parseIceServerLinks(res.headers.get("Link") || "");
    } catch {
      config.iceServers = []; // no TURN announced: host candidates as before
    }
    return config;
  }

  /** WHIP/WHEP offer/answer: the full offer once ICE gathering completes (the server does not trickle). */
  async _negotiate(pc, path) {
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc, 5000);
    const res = await this._authedFetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/sdp" },
      body: pc.localDescription.sdp,
    });
    if (res.status !== 201) throw await httpError(res);
    const location = res.headers.get("Location");
    if (!location) throw new RoomError("internal", "the server did not return a session Location");
    await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
    return new URL(location, `${this.httpUrl}/`).href;
  }

  /**
   * Keep a container's <video> tiles in sync with the room's `media.publishers`: a WHEP
   * playback per publisher, started and stopped as the set changes (host, co-hosts, the PK
   * opponent, call participants).
   * @returns {PublisherVideos}
   */
  followPublishers(room, container, options = {}) {
    return new PublisherVideos(this, room, container, options);
  }
}

/**
 * One room seen through a RoomClient (`client.room(id)`). Its listeners get only events whose
 * room is this one (server events by `meta.room`, local ones such as `resync` and `gap` by
 * `data.room`); its op methods are the client's with the room filled in.
 */
export class Room {
  /**
   * @param {RoomClient} client
   * @param {string} id
   */
  constructor(client, id) {
    this.client = client;
    this.id = id;
    /** @type {Map<string, Map<Function, Function>>} the client-level wrapper of each listener */
    this._wrapped = new Map();
  }

  /**
   * Subscribe to this room's events (`"*"` for all of them).
   * @returns {() => void} unsubscribe
   */
  on(ev, fn) {
    let byFn = this._wrapped.get(ev);
    if (!byFn) {
      byFn = new Map();
      this._wrapped.set(ev, byFn);
    }
    if (!byFn.has(fn)) {
      const wrapper = (data, meta) => {
        if (meta.room === this.id) fn(data, meta);
      };
      byFn.set(fn, wrapper);
      this.client.on(ev, wrapper);
    }
    return () => this.off(ev, fn);
  }

  once(ev, fn) {
    const off = this.on(ev, (data, meta) => {
      off();
      fn(data, meta);
    });
    return off;
  }

  off(ev, fn) {
    const byFn = this._wrapped.get(ev);
    const wrapper = byFn && byFn.get(fn);
    if (!wrapper) return;
    byFn.delete(fn);
    this.client.off(ev, wrapper);
  }

  /** Remove every listener added through this handle. */
  offAll() {
    for (const [ev, byFn] of this._wrapped) for (const wrapper of byFn.values()) this.client.off(ev, wrapper);
    this._wrapped.clear();
  }

  request(op, params = {}, opts = {}) {
    return this.client.request(op, this.id, params, opts);
  }
  /** Fire and forget, like `client.send(op, room, params)`. */
  send(op, params = {}) {
    return this.client.send(op, this.id, params);
  }
}

// The client's methods whose first argument is the room, bound to the handle's room. A list
// rather than hand-written wrappers so a new op method needs one name here (and its type in
// roomserver.d.ts), never a second copy of its parameters.
const ROOM_METHODS = [
  "join", "leave", "resume", "lastSeq", "snapshot", "publishers",
  "start", "end", "sendBarrage", "sendLike", "sendGift", "pinProduct", "unpinProduct", "track",
  "shareLink",
  "createLottery", "enterLottery", "drawLottery", "lotteryRecord",
  "createSale", "buy", "issueCoupon", "claimCoupon", "sendRedPacket", "grabRedPacket",
  "createPoll", "vote", "announce",
  "mute", "unmute", "kick", "setSlowMode", "setBannedWords",
  "setAssistant", "answerQuestions", "markAnswerWrong",
  "requestCohost", "inviteCohost", "acceptCohost", "rejectCohost", "endCohost",
  "invitePk", "acceptPk", "rejectPk", "endPk",
  "publish", "play", "followPublishers", "setMediaLayer",
];
for (const name of ROOM_METHODS) {
  Object.defineProperty(Room.prototype, name, {
    value: function (...args) {
      return this.client[name](this.id, ...args);
    },
    writable: true,
    configurable: true,
  });
}

async function iceGatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    const timer = setTimeout(done, timeoutMs); // send what we have rather than hang
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/** How long a "disconnected" media connection may take to come back before it counts as
 * ended: longer than a network blip usually lasts, far shorter than waiting for "failed". */
const DISCONNECTED_GRACE_MS = 2000;

/** A running WHIP publication. */
export class Publication {
  constructor(client, pc, stream, location) {
    this.client = client;
    this.pc = pc;
    this.stream = stream;
    this.location = location;
    this.stopped = false;
    /** The low layer's track (a clone of the camera's) when published with `layers`. */
    this.lowTrack = null;
  }

  /**
   * Call `callback` once when the session ends from the other side: the server closed its
   * DTLS transport (it stopped the session: a draining node, a kick, the room's end), the
   * connection stayed "disconnected" for DISCONNECTED_GRACE_MS (a node that died without a
   * word: Chromium says "disconnected" about 5 s after its last answer, "failed" only after
   * 15 s), or it failed. Browsers report the DTLS close at once, while `connectionState`
   * stays "connected" until ICE consent runs out: waiting for "failed" kept a host off air
   * 15 s after its node drained (measured). Never after `stop()`.
   * @param {(why: string) => void} callback
   */
  onEnded(callback) {
    let fired = false;
    const fire = (/** @type {string} */ why) => {
      if (fired || this.stopped) return;
      fired = true;
      callback(why);
    };
    let lost = null; // the timer of a "disconnected" connection
    this.pc.addEventListener("connectionstatechange", () => {
      const state = this.pc.connectionState;
      if (state === "failed") fire("connection failed");
      if (state === "disconnected" && lost === null) {
        lost = setTimeout(() => fire("connection lost"), DISCONNECTED_GRACE_MS);
      } else if (state !== "disconnected" && lost !== null) {
        clearTimeout(lost);
        lost = null;
      }
    });
    const watched = new Set();
    for (const t of [...this.pc.getSenders(), ...this.pc.getReceivers()]) {
      const dtls = t.transport;
      if (!dtls || watched.has(dtls)) continue; // one transport when bundled
      watched.add(dtls);
      const check = () => {
        if (dtls.state === "closed" || dtls.state === "failed") fire(`DTLS ${dtls.state}`);
      };
      dtls.addEventListener("statechange", check);
      check();
    }
  }

  /** Stop publishing: DELETE the WHIP session, close the peer connection. */
  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    this.pc.close();
    if (this.lowTrack) this.lowTrack.stop();
    try {
      await this.client._authedFetch(this.location, { method: "DELETE" });
    } catch {
      // the server drops the session by itself when the peer connection goes away
    }
  }
}

/** A running WHEP playback: `stream` has the remote tracks. */
export class Playback extends Publication {
  constructor(client, pc, stream, location, publisher) {
    super(client, pc, stream, location);
    this.publisher = publisher;
  }
}

/**
 * Follows a room's `media.publishers` and keeps one tile (a <div> with a <video>) per
 * publisher in `container`. Tiles carry `data-user` and `data-role`; the container gets
 * `data-count` for CSS grids. Playback failures are retried with backoff while the
 * publisher is still listed.
 */
export class PublisherVideos {
  /**
   * @param {RoomClient} client
   * @param {string} room
   * @param {HTMLElement} container
   * @param {import("./roomserver.js").FollowOptions} [options]
   */
  constructor(client, room, container, options = {}) {
    this.client = client;
    this.room = room;
    this.container = container;
    /** @type {import("./roomserver.js").FollowOptions} */
    this.options = { muted: true, exclude: [], maxRetries: 6, ...options };
    this.tiles = new Map(); // user -> {entry, el, video, playback, gen}
    this._offs = [
      client.on("media.publishers", (data, meta) => {
        if (meta.room === room) this.update(data.publishers || []);
      }),
      client.on("resync", (data) => {
        if (data.room === room) this.update(data.snapshot.room.publishers || []);
      }),
    ];
    this.update(client.publishers(room));
  }

  /** Reconcile tiles with a publishers list. */
  update(publishers) {
    const exclude = new Set(this.options.exclude);
    const wanted = new Map();
    for (const p of publishers) if (!exclude.has(p.user)) wanted.set(p.user, p);
    for (const [user, tile] of this.tiles) {
      if (!wanted.has(user)) this._remove(user, tile);
    }
    for (const [user, entry] of wanted) {
      const tile = this.tiles.get(user);
      if (!tile) {
        this._add(entry);
        continue;
      }
      const republished = entry.stream !== tile.entry.stream;
      tile.entry = entry;
      tile.el.dataset.role = entry.role;
      if (republished) {
        // Published again (another node, after a drain or a crash): the old playback shows
        // nothing more, and its retries may have given up meanwhile.
        if (tile.playback) tile.playback.stop();
        tile.playback = null;
        this._start(tile, 0);
      }
    }
    this.container.dataset.count = String(this.container.children.length);
    if (this.options.onChange) this.options.onChange([...this.tiles.values()].map((t) => t.entry));
  }

  _add(entry) {
    const el = this.options.makeTile ? this.options.makeTile(entry) : defaultTile(entry);
    /** @type {HTMLVideoElement} */
    const video = el instanceof HTMLVideoElement ? el : el.querySelector("video");
    video.autoplay = true;
    video.playsInline = true;
    video.muted = this.options.muted;
    el.dataset.user = entry.user;
    el.dataset.role = entry.role;
    const order = { host: 0, pk: 1, cohost: 2, call: 3 };
    el.style.order = String(order[entry.role] ?? 4);
    this.container.appendChild(el);
    const tile = { entry, el, video, playback: null, gen: 0 };
    this.tiles.set(entry.user, tile);
    this._start(tile, 0);
  }

  async _start(tile, attempt) {
    const gen = ++tile.gen;
    const current = () => this.tiles.get(tile.entry.user) === tile && tile.gen === gen;
    try {
      const pb = await this.client.play(this.room, tile.entry.user);
      if (!current()) return pb.stop();
      tile.playback = pb;
      tile.video.srcObject = pb.stream;
      tile.video.play().catch(() => {});
      pb.onEnded(() => {
        if (!current()) return;
        pb.stop();
        this._retry(tile, 0); // its node drained, or the connection failed: play again
      });
    } catch (err) {
      if (current()) this._retry(tile, attempt, err);
    }
  }

  _retry(tile, attempt, err) {
    if (attempt >= this.options.maxRetries) {
      if (this.options.onError) this.options.onError(tile.entry, err);
      return;
    }
    const gen = tile.gen;
    setTimeout(
      () => {
        if (this.tiles.get(tile.entry.user) === tile && tile.gen === gen) this._start(tile, attempt + 1);
      },
      Math.min(8000, 500 * 2 ** attempt),
    );
  }

  _remove(user, tile) {
    this.tiles.delete(user);
    tile.gen++;
    if (tile.playback) tile.playback.stop();
    tile.el.remove();
  }

  /** Unmute (after a user gesture) or mute every tile. */
  setMuted(muted) {
    this.options.muted = muted;
    for (const t of this.tiles.values()) t.video.muted = muted;
  }

  /** The <video> elements, host first. */
  videos() {
    return [...this.tiles.values()].map((t) => t.video);
  }

  stop() {
    for (const off of this._offs) off();
    for (const [user, tile] of this.tiles) this._remove(user, tile);
    this.container.dataset.count = "0";
  }
}

function defaultTile(entry) {
  const el = document.createElement("div");
  el.className = "rs-tile";
  const video = document.createElement("video");
  const label = document.createElement("span");
  label.className = "rs-tile-label";
  label.textContent = entry.role === "host" ? entry.user : `${entry.user} · ${entry.role}`;
  el.append(video, label);
  return el;
}

function toError(e, p) {
  e = e || {};
  return new RoomError(e.code || "internal", e.message, {
    retryAfterMs: e.retry_after_ms,
    op: p.op,
    room: p.room,
    cid: p.cid,
  });
}

async function errorText(res) {
  try {
    const body = await res.json();
    return (body.error && body.error.message) || res.statusText;
  } catch {
    return res.statusText;
  }
}

const STATUS_CODES = {
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  409: "conflict",
  410: "history_gone",
  413: "too_large",
  429: "rate_limited",
  503: "unavailable",
};

/** An HTTP error response as a RoomError (the body's `error.code` when it has one). */
async function httpError(res) {
  let code = STATUS_CODES[res.status] || "internal";
  let message = res.statusText;
  let retryAfterMs;
  try {
    const body = await res.json();
    if (body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      retryAfterMs = body.error.retry_after_ms;
    }
  } catch {
    // not JSON (e.g. a plain-text 4xx from a proxy)
  }
  return new RoomError(code, message, { status: res.status, retryAfterMs });
}

/** Decode a JWT's claims without verifying it (display only: the server verifies). */
/**
 * The ICE servers in a `Link` header value (several links may be folded into one, comma
 * separated): those with `rel="ice-server"`, as RTCIceServer dictionaries (RFC 9725 §4.6).
 * @param {string} header
 * @returns {RTCIceServer[]}
 */
export function parseIceServerLinks(header) {
  const servers = [];
  // <url>; param="quoted" | param=token ...   (commas inside <> or quotes do not split)
  const link = /<([^>]*)>((?:\s*;\s*[A-Za-z-]+\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^;,\s]*))*)/g;
  const param = /;\s*([A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;,\s]*))/g;
  for (const m of header.matchAll(link)) {
    const params = {};
    for (const p of m[2].matchAll(param)) {
      params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3];
    }
    if (params.rel !== "ice-server") continue;
    const server = { urls: m[1] };
    if (params.username !== undefined) server.username = params.username;
    if (params.credential !== undefined) server.credential = params.credential;
    servers.push(server);
  }
  return servers;
}

export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "="))
        .split("")
        .map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`)
        .join(""),
    );
    return JSON.parse(json);
  } catch {
    return {};
  }
}
