// Shared widgets of the host, viewer and call pages (not part of the SDK). The page shell
// (DOM helpers, language switch, token, toasts, errors, connection state) is shell.js; its
// exports are passed on here so that a page imports from one place.
import { giftPicture, icon } from "/app/icons.js";
import { compact, has, lang, money, number, setText, t } from "/app/i18n.js";
import { $$, h, toast } from "/app/shell.js";

export { icon, compact, money, number, setText, t };
export { $, $$, attempt, closeText, devToken, errorText, fatal, h, openClient, pageParams, toast, whoAmI } from "/app/shell.js";

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
    return this.line([h("b.who", {}, d.user.name), ` ${t("chat.gift_sent", { n: d.count, gift: giftName(d.gift) })} `, giftIcon(d.gift.id, "inline")], "gift");
  }
  system(text) {
    return this.line([text], "sys");
  }
}

/** A gift's name in the page's language (the default gifts have texts; an app's own keep theirs). */
export function giftName(gift) {
  return gift && has(`gift.${gift.id}`) ? t(`gift.${gift.id}`) : (gift && gift.name) || "";
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
 * drop, or a server too busy to answer ICE checks in time), the server ends the session (its
 * node drains) or publishing fails, it publishes
 * again with growing pauses, up to `tries` times in a row, until stop().
 */
export class KeptPublication {
  /**
   * @param {import("/sdk/roomserver.js").RoomClient} client
   * @param {string} room
   * @param {MediaStream} stream
   * @param {{tries?: number, layers?: boolean, onState?: (state: string) => void, onRetry?: (err?: unknown) => void, onGiveUp?: (err?: unknown) => void}} [options]
   */
  constructor(
    client,
    room,
    stream,
    { tries = 6, layers = false, onState = () => {}, onRetry = () => {}, onGiveUp = () => {} } = {},
  ) {
    this.client = client;
    this.layers = layers; // also send the low quality layer (issue 14)
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
    const pub = await this.client.publish(this.room, this.stream, { layers: this.layers });
    if (this.stopped) return pub.stop();
    this.current = pub;
    pub.pc.addEventListener("connectionstatechange", () => {
      if (this.current !== pub) return;
      if (pub.pc.connectionState === "connected") this.failures = 0;
      this.onState(this.state);
    });
    // The server ended the session (its node drained: publish again, through whichever node
    // answers now) or the connection failed.
    pub.onEnded(() => {
      if (this.current !== pub) return;
      this.current = null;
      pub.stop().catch(() => {});
      this._retry();
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
    setTimeout(() => {
      // Told only now: a session the server ended on purpose (co-hosting over) is usually
      // stopped by the page meanwhile, and then there is nothing to tell.
      if (this.stopped || this.current) return;
      this.onRetry(err);
      this._publish().catch((e) => this._retry(e));
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
    const res = await fetch(path, { headers: { Authorization: `Bearer ${token}`, "Accept-Language": lang() } });
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
    toast(t("shell.cannot_open_it", { detail: err.message || err }), "error");
  }
}

export function copy(text) {
  return navigator.clipboard.writeText(text).then(
    () => toast(t("shell.copied"), "ok", 1200),
    () => toast(text, "info", 8000),
  );
}
