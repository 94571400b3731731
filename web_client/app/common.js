// Shared helpers of the host, viewer and call pages (not part of the SDK).
import { RoomClient, RoomError, closeMessage, tokenClaims } from "/sdk/roomserver.js";
import { giftPicture, hydrateIcons, icon } from "/app/icons.js";

export { icon };

// Modules run after parsing: the static markup is there to decorate.
hydrateIcons();

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** Create an element: h("div.card", {onclick}, child, "text"). */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c != null && c !== false) el.append(c);
  return el;
}

export function money(cents) {
  if (cents == null) return "";
  return `¥${(cents / 100).toFixed(cents % 100 ? 2 : 0)}`;
}

export function compact(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(n ?? 0);
}

/** "mm:ss" (or "h:mm:ss") until `at` (unix ms); "00:00" once past. */
export function countdown(at, now = Date.now()) {
  let s = Math.max(0, Math.ceil((at - now) / 1000));
  const hh = Math.floor(s / 3600);
  s -= hh * 3600;
  const mm = String(Math.floor(s / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** One ticking clock for every countdown on the page: elements with data-until. */
export function startClock() {
  const tick = () => {
    const now = Date.now();
    for (const el of $$("[data-until]")) {
      const at = Number(el.dataset.until);
      el.textContent = countdown(at, now);
      el.classList.toggle("urgent", at - now < 10_000);
    }
  };
  tick();
  return setInterval(tick, 250);
}

// ---- messages ---------------------------------------------------------------------------

const CONTEXT_MESSAGES = {
  "room.join": {
    forbidden: "You cannot enter this room: you were removed from it, or your token is for another room.",
  },
  "sale.buy": {
    sold_out: "Sold out! Every item of this flash sale is gone.",
    limit_reached: "You have reached the purchase limit for this item.",
    not_open: (err) => (err.retryAfterMs ? "This flash sale has not started yet." : "This flash sale has ended."),
    conflict: "That order was already placed with different details.",
  },
  "coupon.claim": {
    sold_out: "All coupons have been claimed.",
    limit_reached: "You already claimed this coupon.",
  },
  "redpacket.grab": {
    sold_out: "Too late: the red packet is empty.",
    conflict: "You already grabbed this red packet.",
  },
  "lottery.enter": {
    not_open: "This lottery is closed.",
    forbidden: (err) => `You are not eligible for this lottery: ${err.message}.`,
    conflict: "You are already in this lottery.",
  },
  "poll.vote": { conflict: "You already voted.", not_open: "This poll is closed." },
  "cohost.request": {
    conflict: "You already asked to join on camera.",
    limit_reached: "The stage is full (at most 8 co-hosts).",
  },
  "barrage.send": { muted: "You have been muted in this room and cannot send messages." },
  "lottery.create": { conflict: "A lottery is already open." },
  "poll.create": { conflict: "A poll is already open." },
  "pk.invite": { conflict: "One of the rooms is busy with another PK.", not_found: "That room does not exist." },
};

/** The sentence to show an end user for an error (from the SDK, an HTTP call or anything). */
export function errorText(err) {
  if (!(err instanceof RoomError)) return String((err && err.message) || err);
  let specific = err.op && CONTEXT_MESSAGES[err.op] && CONTEXT_MESSAGES[err.op][err.code];
  if (typeof specific === "function") specific = specific(err);
  let text = specific || err.userMessage;
  if (err.code === "rate_limited" && err.retryAfterMs) {
    const slow = /slow mode/i.test(err.message);
    text = `${slow ? "Slow mode is on." : text} Try again in ${Math.ceil(err.retryAfterMs / 1000)} s.`;
  }
  if (err.code === "bad_request" && err.message) text = `${text} (${err.message})`;
  return text;
}

export function toast(text, kind = "info", ms = 3500) {
  let box = $("#toasts");
  if (!box) {
    box = h("div", { id: "toasts" });
    document.body.append(box);
  }
  const el = h(`div.toast.${kind}`, { role: kind === "error" ? "alert" : "status" }, text);
  box.append(el);
  setTimeout(() => el.classList.add("leaving"), ms);
  setTimeout(() => el.remove(), ms + 400);
  return el;
}

/** Run an async UI action; show its error as a toast (and return undefined on error). */
export async function attempt(fn, okText) {
  try {
    const out = await fn();
    if (okText) toast(typeof okText === "function" ? okText(out) : okText, "ok");
    return out;
  } catch (err) {
    toast(errorText(err), "error");
    console.warn(err);
    return undefined;
  }
}

// ---- session bootstrap ------------------------------------------------------------------

/** Ask a dev server for a token (404 unless the server runs in dev mode). */
export async function devToken(body) {
  const res = await fetch("/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!res.ok) {
    const msg = await res.json().then((b) => b.error && b.error.message, () => res.statusText);
    throw new Error(`cannot mint a dev token: ${msg}`);
  }
  return (await res.json()).token;
}

/**
 * The page's token, taken out of the URL: links carry it in the fragment (`#token=JWT`, never
 * sent to a server) and old links in the query (`?token=`); either way the address bar and the
 * history entry are rewritten without it, so it stays out of browser history and of links
 * copied from the address bar. The tab keeps it (sessionStorage) so that a reload still works.
 */
function takeToken(room) {
  const q = new URLSearchParams(location.search);
  const hash = new URLSearchParams(location.hash.slice(1));
  const key = `roomserver.token:${location.pathname}:${room}`;
  const token = hash.get("token") || q.get("token");
  if (hash.has("token") || q.has("token")) {
    q.delete("token");
    hash.delete("token");
    const search = q.toString();
    const frag = hash.toString();
    history.replaceState(history.state, "", `${location.pathname}${search ? `?${search}` : ""}${frag ? `#${frag}` : ""}`);
  }
  try {
    if (token) sessionStorage.setItem(key, token);
    return token || sessionStorage.getItem(key);
  } catch {
    return token; // storage disabled: the token lives as long as the page
  }
}

/**
 * Where the page's room and token come from:
 * `?room=r1#token=JWT` (an app hands the page a token), or in dev mode
 * `?room=r1&user=alice&role=host` (the page mints its own, and again on expiry).
 */
export function pageParams(defaultRole) {
  const q = new URLSearchParams(location.search);
  const room = q.get("room") || "demo";
  return {
    room,
    token: takeToken(room),
    user: q.get("user"),
    name: q.get("name") || undefined,
    role: q.get("role") || defaultRole,
    tier: Number(q.get("tier") || 0),
  };
}

/** Connect a RoomClient for this page; shows connection state in `statusEl`. */
export async function openClient(p, statusEl) {
  let tokenProvider;
  let token = p.token;
  if (!token && p.user) {
    tokenProvider = () => devToken({ user: p.user, role: p.role, name: p.name, tier: p.tier });
  } else if (!token) {
    throw new MissingToken();
  }
  const client = new RoomClient({ url: location.origin, token, tokenProvider });
  const show = (text, cls) => {
    if (!statusEl) return;
    statusEl.textContent = text;
    statusEl.className = `conn ${cls}`;
  };
  client.on("reconnecting", (d) => show(`Reconnecting… (${d.attempt})`, "warn"));
  client.on("reconnected", () => {
    show("", "ok");
    toast("Reconnected", "ok", 1500);
  });
  client.on("disconnected", (d) => {
    if (d.code !== 1000) toast(d.message, d.code === 4003 ? "error" : "warn");
    if (d.code === 4003) {
      show(closeMessage(4003), "bad");
      document.body.classList.add("kicked");
    }
  });
  client.on("state", (d) => {
    if (d.state === "closed" && !document.body.classList.contains("kicked")) show("Disconnected", "bad");
  });
  client.on("error", (d) => d.error && toast(errorText(d.error), "error"));
  await client.connect();
  show("", "ok");
  return client;
}

export function whoAmI(client) {
  const c = tokenClaims(client.token);
  return { id: c.sub, name: c.name || c.sub, role: c.role || "viewer", tier: c.tier || 0 };
}

class MissingToken extends Error {
  constructor() {
    super("This page needs a token to enter a room.");
  }
}

/** A fatal start-up problem: replace the page with a small card in the middle of the screen. */
export function fatal(err) {
  const missing = err instanceof MissingToken;
  document.body.className = "fatal-page";
  document.body.replaceChildren(
    h(
      "div.fatal",
      { role: "alert" },
      h("div.fatal-icon", {}, icon(missing ? "key" : "x")),
      h("h2", {}, missing ? "No token in this link" : "Cannot open this room"),
      h("p", {}, missing ? err.message : err instanceof RoomError ? errorText(err) : String(err.message || err)),
      missing
        ? h("p.muted.small", {}, "Open it from the start page, or from your app with ", h("code", {}, "#token=…"), " at the end of the link.")
        : null,
      h("a.btn", { href: "/" }, "Go to the start page"),
    ),
  );
  document.body.dataset.ready = "fatal";
}

// ---- barrage, chat, hearts ---------------------------------------------------------------

/** Scrolling "danmaku" overlay: each message flies right to left in a free lane. */
export class Danmaku {
  constructor(el, lanes = 6) {
    this.el = el;
    this.lanes = new Array(lanes).fill(0);
    this.max = 40;
  }
  add(text, { mine = false, tier = 0 } = {}) {
    if (this.el.childElementCount >= this.max) return; // under a flood, show what fits
    const now = performance.now();
    let lane = this.lanes.findIndex((free) => free <= now);
    if (lane < 0) lane = this.lanes.indexOf(Math.min(...this.lanes));
    const item = h(`div.dm${mine ? ".mine" : ""}${tier >= 5 ? ".vip" : ""}`, {}, text);
    item.style.top = `${lane * 2.1 + 0.5}em`;
    const duration = 7000 + Math.random() * 2000;
    item.style.animationDuration = `${duration}ms`;
    this.lanes[lane] = now + 1200 + text.length * 35;
    item.addEventListener("animationend", () => item.remove());
    this.el.append(item);
  }
}

/** The chat list: the last N lines, newest at the bottom. */
export class ChatList {
  constructor(el, max = 60) {
    this.el = el;
    this.max = max;
  }
  clear() {
    this.el.replaceChildren();
  }
  /** The join snapshot's `recent` barrage (oldest first): what was said before we came in. */
  earlier(events, onUser) {
    this.clear();
    for (const ev of (events || []).slice(-this.max)) {
      if (ev && ev.ev === "barrage" && ev.data) this.barrage(ev.data, onUser).classList.add("earlier");
    }
  }
  line(parts, cls = "") {
    const el = h(`div.line${cls ? `.${cls}` : ""}`, {}, ...parts);
    this.el.append(el);
    while (this.el.childElementCount > this.max) this.el.firstElementChild.remove();
    this.el.scrollTop = this.el.scrollHeight;
    return el;
  }
  barrage(d, onUser) {
    const name = h("b.who", { title: d.user.id, onclick: onUser ? () => onUser(d.user) : null }, d.user.name);
    const badge = d.user.tier ? h("span.tier", {}, `Lv${d.user.tier}`) : null;
    return this.line([badge, name, h("span.text", {}, d.text)], "msg");
  }
  gift(d) {
    return this.line([h("b.who", {}, d.user.name), ` sent ${d.count} × ${d.gift.name} `, giftIcon(d.gift.id, "inline")], "gift");
  }
  system(text) {
    return this.line([text], "sys");
  }
}

export function giftIcon(id, cls = "") {
  return giftPicture(id, cls);
}

/** Floating hearts above the like button. */
export function flyHearts(el, n = 1) {
  const colors = ["#ff3b6b", "#ff8a00", "#ffd23f", "#7c5cff", "#00d1b2", "#ff5fd2"];
  for (let i = 0; i < Math.min(n, 8); i++) {
    const heart = h("span.heart", {}, icon("heart"));
    heart.style.color = colors[Math.floor(Math.random() * colors.length)];
    heart.style.left = `${Math.random() * 40 - 20}px`;
    heart.style.setProperty("--dx", (Math.random() * 2 - 1).toFixed(2));
    heart.style.animationDelay = `${i * 90}ms`;
    heart.addEventListener("animationend", () => heart.remove());
    el.append(heart);
  }
}

// Publishing again cannot help these: the token or the room's rules refuse it.
const FINAL_PUBLISH_ERRORS = new Set(["forbidden", "unauthorized", "bad_request", "limit_reached", "not_found"]);

/**
 * My camera published to a room (WHIP) and kept there: when the connection fails (a network
 * drop, or a server too busy to answer ICE checks in time) or publishing fails, it publishes
 * again with growing pauses, up to `tries` times in a row, until stop().
 */
export class KeptPublication {
  /**
   * @param {import("/sdk/roomserver.js").RoomClient} client
   * @param {string} room
   * @param {MediaStream} stream
   * @param {{tries?: number, onState?: (state: string) => void, onRetry?: (err?: unknown) => void, onGiveUp?: (err?: unknown) => void}} [options]
   */
  constructor(client, room, stream, { tries = 6, onState = () => {}, onRetry = () => {}, onGiveUp = () => {} } = {}) {
    this.client = client;
    this.room = room;
    this.stream = stream;
    this.tries = tries;
    this.onState = onState;
    this.onRetry = onRetry;
    this.onGiveUp = onGiveUp;
    this.current = null; // the Publication on air now
    this.failures = 0;
    this.stopped = false;
  }
  /** The first attempt: resolves once on air, or throws its error (retries go on meanwhile). */
  async start() {
    try {
      await this._publish();
    } catch (err) {
      this._retry(err);
      throw err;
    }
  }
  get pc() {
    return this.current ? this.current.pc : null;
  }
  get state() {
    return this.current ? this.current.pc.connectionState : this.stopped ? "stopped" : "retrying";
  }
  async _publish() {
    const pub = await this.client.publish(this.room, this.stream);
    if (this.stopped) return pub.stop();
    this.current = pub;
    pub.pc.addEventListener("connectionstatechange", () => {
      if (this.current !== pub) return;
      if (pub.pc.connectionState === "connected") this.failures = 0;
      if (pub.pc.connectionState === "failed") {
        this.current = null;
        pub.stop().catch(() => {});
        this._retry();
      }
      this.onState(this.state);
    });
    this.onState(this.state);
  }
  _retry(err) {
    if (this.stopped) return;
    if ((err && FINAL_PUBLISH_ERRORS.has(err.code)) || this.failures >= this.tries) {
      this.onGiveUp(err);
      return;
    }
    const wait = Math.min(8000, 500 * 2 ** this.failures++);
    this.onRetry(err);
    setTimeout(() => {
      if (!this.stopped && !this.current) this._publish().catch((e) => this._retry(e));
    }, wait);
  }
  async stop() {
    this.stopped = true;
    const pub = this.current;
    this.current = null;
    if (pub) await pub.stop();
  }
}

/**
 * Open an API resource (a report, a raw record) in a new tab, authorised by a header: a
 * `?token=` URL would stay in the browser history. The tab shows a blob: copy of the answer.
 */
export async function openAuthorised(path, token) {
  const tab = window.open("", "_blank"); // now, while the click still allows a new tab
  try {
    const res = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
    if (!res.ok) {
      const msg = await res.json().then((b) => b.error && b.error.message, () => res.statusText);
      throw new Error(`${res.status}: ${msg}`);
    }
    const url = URL.createObjectURL(await res.blob());
    if (tab) tab.location.href = url;
    else location.assign(url);
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (err) {
    if (tab) tab.close();
    toast(`Cannot open it: ${err.message || err}`, "error");
  }
}

export function copy(text) {
  return navigator.clipboard.writeText(text).then(
    () => toast("Copied", "ok", 1200),
    () => toast(text, "info", 8000),
  );
}
