// The replay page (replay.html?room=r1[&show=2]#token=JWT): a recorded show (GET
// /v1/rooms/{room}/replays) in a <video> (the file is served with Range requests, so seeking
// fetches only what it needs), its barrage replayed at the show second it was sent and a
// chapter at every product pin (GET …/replays/{show}/timeline). The video's time plus the
// recording's `offset_s` is the show's clock. "Buy" fires a `roomserver:buy` DOM event with the
// product for the embedding shop to handle (the replay places no order itself).
import { $, devToken, fatal, h, pageParams } from "/app/shell.js";
import { lang, money, t } from "/app/i18n.js";

const q = new URLSearchParams(location.search);
const params = pageParams("viewer");
const BARRAGE_SHOWN = 30; // lines in the barrage pane
const BARRAGE_BACKLOG_S = 15; // after a seek: the barrage of the seconds before the new position

async function token() {
  if (params.token) return params.token;
  params.token = await devToken({ user: params.user || "replay-viewer", role: "viewer" });
  return params.token;
}

async function getJson(path) {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${await token()}`, "Accept-Language": lang() } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error((body.error && body.error.message) || `${res.status} ${res.statusText}`);
  return body;
}

const clock = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;

function render(entry, timeline, state) {
  const main = $("#replay");
  const video = state.video;
  const list = h("ol.replay-barrage", { "aria-live": "polite" });
  const chapters = h(
    "ol.replay-chapters",
    {},
    timeline.chapters.map((c, i) =>
      h(
        "li.chapter",
        { "data-chapter": String(i) },
        h("button.jump", { type: "button", onclick: () => jump(c.t) }, `${clock(c.t)} · ${c.product.title}`),
        h("span.price", {}, c.product.price_cents == null ? "" : money(c.product.price_cents)),
        h("button.buy", { type: "button", onclick: () => buy(c.product) }, t("replay.buy")),
      ),
    ),
  );
  $("#show-line").textContent = t("replay.show_line", { show: entry.show, user: entry.user });
  main.replaceChildren(
    h("section.replay-player", {}, video),
    h("section", {}, h("h2", {}, t("replay.chapters")), timeline.chapters.length ? chapters : h("p.muted", {}, t("replay.no_chapters"))),
    h("section", {}, h("h2", {}, t("replay.barrage")), list),
  );
  state.list = list;
  redrawBarrage(state, true);
}

function showSecond(state) {
  return state.video.currentTime + state.entry.offset_s;
}

// Lines with t in (last drawn, now]; after a seek, the backlog before the new position.
function redrawBarrage(state, reset) {
  const now = showSecond(state);
  const items = state.timeline.barrage;
  if (reset) {
    state.list.replaceChildren();
    state.next = items.findIndex((b) => b.t > now - BARRAGE_BACKLOG_S);
    if (state.next < 0) state.next = items.length;
  }
  while (state.next < items.length && items[state.next].t <= now) {
    const b = items[state.next++];
    state.list.append(h("li", {}, h("small.muted", {}, `${clock(b.t)} `), h("b", {}, `${b.user}: `), b.text));
    state.shown += 1;
  }
  while (state.list.children.length > BARRAGE_SHOWN) state.list.firstChild.remove();
}

let state = null;

function jump(showT) {
  state.video.currentTime = Math.max(0, showT - state.entry.offset_s);
  state.video.play().catch(() => {});
}

function buy(product) {
  window.dispatchEvent(new CustomEvent("roomserver:buy", { detail: { room: params.room, product } }));
  state.bought.push(product.id);
}

async function start() {
  const show = q.get("show");
  const room = encodeURIComponent(params.room);
  const listing = await getJson(`/v1/rooms/${room}/replays${show ? `?show=${encodeURIComponent(show)}` : ""}`);
  const entry = listing.replays[0]; // newest show, its host file first
  if (!entry) throw new Error(t("replay.none"));
  const timeline = await getJson(`/v1/rooms/${room}/replays/${entry.show}/timeline`);
  const video = h("video", { controls: "", playsinline: "", muted: "", preload: "auto" });
  video.muted = true; // autoplay policies allow muted playback; the viewer unmutes
  video.src = `${entry.url}?token=${encodeURIComponent(await token())}`;
  state = { entry, timeline, video, list: null, next: 0, shown: 0, bought: [] };
  video.addEventListener("timeupdate", () => redrawBarrage(state, false));
  video.addEventListener("seeked", () => redrawBarrage(state, true));
  render(entry, timeline, state);
  window.addEventListener("langchange", () => render(entry, timeline, state));
  $("#replay").setAttribute("aria-busy", "false");
  window.app = { entry, timeline, state, showSecond: () => showSecond(state) };
  await new Promise((resolve, reject) => {
    if (video.readyState >= 1) resolve();
    video.addEventListener("loadedmetadata", resolve, { once: true });
    video.addEventListener("error", () => reject(new Error(t("replay.cannot_play"))), { once: true });
  });
  document.body.dataset.ready = "1";
  video.play().catch(() => {});
}

start().catch((err) => fatal(err));
