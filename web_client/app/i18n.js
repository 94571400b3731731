// The pages' languages: English and Simplified Chinese (the product is for 直播带货 teams).
//
// Texts live in message catalogues, one JSON file per language with the same keys
// (app/locales/en.json, app/locales/zh-CN.json; tests/unit/test_i18n_catalogues.py fails when
// a key is missing in one of them or a page uses a key neither has). A message is a string
// with {name} placeholders, or {"one": …, "other": …} chosen by Intl.PluralRules on {n}.
//
// The language is, in this order: `?lang=` in the page's address, the choice stored by the
// switch (localStorage), the browser's languages (what it sends as Accept-Language), English.
//
// Static markup is translated by attributes: data-i18n (text), data-i18n-placeholder,
// data-i18n-title, data-i18n-aria-label, data-i18n-value (a form field's example value, replaced
// only while the user has not changed it); `setText` marks an element the same way, so that
// switching the language re-translates every such element in place, without a reload.

export const LANGS = ["zh-CN", "en"];
export const DEFAULT_LANG = "en";
const STORE_KEY = "roomserver.lang";

/** The supported language a tag names (any Chinese is zh-CN, any English en), or null. */
export function langOf(tag) {
  const primary = String(tag || "").toLowerCase().split(/[-_]/)[0];
  return primary === "zh" ? "zh-CN" : primary === "en" ? "en" : null;
}

function storedLang() {
  try {
    return localStorage.getItem(STORE_KEY);
  } catch {
    return null; // storage disabled
  }
}

/** The language this page starts in. */
export function pickLang() {
  const fromUrl = langOf(new URLSearchParams(location.search).get("lang"));
  if (fromUrl) return fromUrl;
  const stored = langOf(storedLang());
  if (stored) return stored;
  for (const tag of navigator.languages || [navigator.language]) {
    const lang = langOf(tag);
    if (lang) return lang;
  }
  return DEFAULT_LANG;
}

async function load(lang) {
  const res = await fetch(`/app/locales/${lang}.json`);
  if (!res.ok) throw new Error(`cannot load the ${lang} texts: ${res.status}`);
  return res.json();
}

const catalogues = {};
let current = pickLang();
const [english, chosen] = await Promise.all([load("en"), current === "en" ? null : load(current)]);
catalogues.en = english;
catalogues[current] = chosen || english;
document.documentElement.lang = current;

export function lang() {
  return current;
}

function fill(text, params) {
  return text.replace(/\{(\w+)\}/g, (m, name) => (params && params[name] != null ? String(params[name]) : m));
}

/** The text for `key` in the page's language ({n} picks the plural form). */
export function t(key, params = {}) {
  let msg = catalogues[current][key] ?? catalogues.en[key];
  if (msg == null) {
    console.error(`i18n: no text for "${key}"`);
    return key;
  }
  if (typeof msg === "object") msg = msg[new Intl.PluralRules(current).select(Number(params.n ?? 0))] ?? msg.other;
  return fill(msg, params);
}

/** Whether a key has a text (error codes and close codes look themselves up). */
export function has(key) {
  return key in catalogues.en;
}

// ---- formatting ----------------------------------------------------------------------------

/** 12,345 / 12,345 */
export function number(n) {
  return new Intl.NumberFormat(current).format(n ?? 0);
}

/** Short counts for badges: 12.3K in English, 1.2万 in Chinese. */
export function compact(n) {
  return new Intl.NumberFormat(current, { notation: "compact", maximumFractionDigits: 1 }).format(n ?? 0);
}

/** Money in yuan from cents: ¥129 or ¥59.90 (whole yuan without decimals). */
export function money(cents) {
  if (cents == null) return "";
  const whole = cents % 100 === 0;
  return new Intl.NumberFormat(current, {
    style: "currency",
    currency: "CNY",
    currencyDisplay: "narrowSymbol",
    minimumFractionDigits: whole ? 0 : 2,
    maximumFractionDigits: 2,
  }).format(cents / 100);
}

/** A date and time (unix ms) as people of the language write it. */
export function dateTime(ms) {
  return new Intl.DateTimeFormat(current, { dateStyle: "medium", timeStyle: "short" }).format(new Date(ms));
}

// ---- the page ------------------------------------------------------------------------------

const ATTRS = [
  ["i18nPlaceholder", "placeholder"],
  ["i18nTitle", "title"],
  ["i18nAriaLabel", "aria-label"],
];

/** Mark an element's text as `key` (so a language switch re-translates it) and set it. */
export function setText(el, key, params) {
  el.dataset.i18n = key;
  if (params) el.dataset.i18nArgs = JSON.stringify(params);
  else delete el.dataset.i18nArgs;
  el.textContent = t(key, params);
  return el;
}

/** Translate every marked element under `root`. */
export function translate(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    if (!(el instanceof HTMLElement)) continue;
    el.textContent = t(el.dataset.i18n, el.dataset.i18nArgs ? JSON.parse(el.dataset.i18nArgs) : undefined);
  }
  for (const [prop, attr] of ATTRS) {
    const sel = `[data-${prop.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}]`;
    for (const el of root.querySelectorAll(sel)) {
      if (el instanceof HTMLElement) el.setAttribute(attr, t(el.dataset[prop]));
    }
  }
  for (const el of root.querySelectorAll("[data-i18n-value]")) {
    if (!(el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement)) continue;
    if (el.dataset.i18nShown != null && el.value !== el.dataset.i18nShown) continue; // edited: theirs
    el.value = t(el.dataset.i18nValue);
    el.dataset.i18nShown = el.value;
  }
  const title = document.querySelector("title[data-i18n]");
  if (title) document.title = title.textContent;
}

/** Switch the page to `next`, remember the choice, and tell the page (a `langchange` event). */
export async function setLang(next) {
  const chosen = langOf(next) || DEFAULT_LANG;
  if (!catalogues[chosen]) catalogues[chosen] = await load(chosen);
  current = chosen;
  try {
    localStorage.setItem(STORE_KEY, chosen);
  } catch {
    // storage disabled: the choice lasts as long as the page
  }
  document.documentElement.lang = chosen;
  const q = new URLSearchParams(location.search);
  if (q.has("lang")) {
    // a reload keeps the new choice: the address's ?lang= would win over the stored one
    q.set("lang", chosen);
    history.replaceState(history.state, "", `${location.pathname}?${q}${location.hash}`);
  }
  translate();
  window.dispatchEvent(new CustomEvent("langchange", { detail: { lang: chosen } }));
}

/** Run `fn` after every language switch (for texts a page renders itself). */
export function onLangChange(fn) {
  window.addEventListener("langchange", () => fn(current));
}
