// The shell every page shares: DOM helpers, the language switch in the header, the token
// taken from the link (`#token=`), toasts, error sentences, the connection state, and the
// card shown when a page cannot start. Page-specific widgets are in common.js.
import { RoomClient, RoomError, tokenClaims } from "/sdk/roomserver.js";
import { hydrateIcons, icon } from "/app/icons.js";
import { LANGS, has, lang, setLang, setText, t, translate } from "/app/i18n.js";

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

// ---- header: the language switch ---------------------------------------------------------

const LANG_LABELS = { "zh-CN": "中文", en: "EN" };

/** The 中文 / EN switch (two buttons, the current one pressed). */
export function langSwitch() {
  const box = h("div.lang-switch", { role: "group", "aria-label": "Language / 语言" });
  const sync = () => {
    for (const b of box.children) b.setAttribute("aria-pressed", String(b.dataset.lang === lang()));
  };
  for (const code of LANGS) {
    box.append(h("button", { type: "button", lang: code, dataset: { lang: code }, onclick: () => setLang(code) }, LANG_LABELS[code]));
  }
  sync();
  window.addEventListener("langchange", sync);
  return box;
}

/** Translate the static markup and put the switch where the page's header asks for it. */
function startShell() {
  hydrateIcons(); // modules run after parsing: the static markup is there to decorate
  translate();
  for (const slot of $$("[data-lang-switch]")) slot.replaceChildren(langSwitch());
}
startShell();

// ---- errors and toasts -------------------------------------------------------------------

/**
 * The sentence to show an end user for an error (from the SDK, an HTTP call or anything), in
 * the page's language: by the op and code first (`ctx.sale.buy.sold_out`), then by the code
 * (`error.sold_out`). The server's own text, English, is added only where it is the detail
 * (a bad request, an eligibility rule).
 */
export function errorText(err) {
  if (!(err instanceof RoomError)) return String((err && err.message) || err);
  const specific = err.op ? `ctx.${err.op}.${err.code}` : null;
  let text;
  if (specific && err.code === "not_open" && err.op === "sale.buy") text = t(err.retryAfterMs ? "ctx.sale.buy.not_open.soon" : "ctx.sale.buy.not_open");
  else if (specific && has(specific)) text = t(specific, { detail: err.message });
  else text = has(`error.${err.code}`) ? t(`error.${err.code}`) : err.message;
  if (err.code === "rate_limited" && err.retryAfterMs) {
    const slow = /slow mode/i.test(err.message);
    text = t("error.retry_in", { text: slow ? t("error.slow_mode") : text, s: Math.ceil(err.retryAfterMs / 1000) });
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

// ---- the token ---------------------------------------------------------------------------

/** Ask a dev server for a token (404 unless the server runs in dev mode). */
export async function devToken(body) {
  const res = await fetch("/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json", "Accept-Language": lang() },
    body: JSON.stringify(body),
  });
  if (!res.ok) {
    const msg = await res.json().then((b) => b.error && b.error.message, () => res.statusText);
    throw new Error(t("shell.dev_token_failed", { detail: msg }));
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

export function whoAmI(client) {
  const c = tokenClaims(client.token);
  return { id: c.sub, name: c.name || c.sub, role: c.role || "viewer", tier: c.tier || 0 };
}

class MissingToken extends Error {
  constructor() {
    super("This page needs a token to enter a room.");
  }
}

// ---- the connection ----------------------------------------------------------------------

/** A WebSocket close code's sentence in the page's language. */
export function closeText(code) {
  return has(`close.${code}`) ? t(`close.${code}`) : t("close.other", { code });
}

/** Connect a RoomClient for this page; shows the connection state in `statusEl`. */
export async function openClient(p, statusEl) {
  let tokenProvider;
  let token = p.token;
  if (!token && p.user) {
    tokenProvider = () => devToken({ user: p.user, role: p.role, name: p.name, tier: p.tier });
  } else if (!token) {
    throw new MissingToken();
  }
  const client = new RoomClient({ url: location.origin, token, tokenProvider });
  const show = (key, cls, params) => {
    if (!statusEl) return;
    if (key) setText(statusEl, key, params);
    else {
      delete statusEl.dataset.i18n;
      statusEl.textContent = "";
    }
    statusEl.className = `conn ${cls}`;
  };
  client.on("reconnecting", (d) => show("conn.reconnecting", "warn", { n: d.attempt }));
  client.on("reconnected", () => {
    show(null, "ok");
    toast(t("conn.reconnected"), "ok", 1500);
  });
  client.on("disconnected", (d) => {
    if (d.code !== 1000) toast(closeText(d.code), d.code === 4003 ? "error" : "warn");
    if (d.code === 4003) {
      show("close.4003", "bad");
      document.body.classList.add("kicked");
    }
  });
  client.on("state", (d) => {
    if (d.state === "closed" && !document.body.classList.contains("kicked")) show("conn.disconnected", "bad");
  });
  client.on("error", (d) => d.error && toast(errorText(d.error), "error"));
  await client.connect();
  show(null, "ok");
  return client;
}

/** A fatal start-up problem: replace the page with a small card in the middle of the screen. */
export function fatal(err) {
  const missing = err instanceof MissingToken;
  const text = (key) => setText(h("span"), key);
  document.body.className = "fatal-page";
  document.body.replaceChildren(
    h(
      "div.fatal",
      { role: "alert" },
      langSwitch(),
      h("div.fatal-icon", {}, icon(missing ? "key" : "x")),
      h("h2", {}, text(missing ? "fatal.no_token.title" : "fatal.cannot_open")),
      h("p", {}, missing ? text("fatal.no_token.text") : err instanceof RoomError ? errorText(err) : String(err.message || err)),
      missing ? h("p.muted.small", {}, text("fatal.no_token.how_before"), h("code", {}, "#token=…"), text("fatal.no_token.how_after")) : null,
      h("a.btn", { href: "/" }, text("fatal.start_page")),
    ),
  );
  document.body.dataset.ready = "fatal";
}
