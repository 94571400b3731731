// Call page (`mode: call` rooms): everyone publishes, everyone plays everyone; up to 9.
import { $, ChatList, KeptPublication, attempt, errorText, fatal, h, icon, openClient, pageParams, setText, t, toast, whoAmI } from "/app/common.js";
import { initials } from "/app/roomview.js";

const p = pageParams("viewer");
const MAX_PARTICIPANTS = 9;
let client;
let me;
let grid;
let stream = null;
let publication = null;
// Publishers are listed by user id; names come from events as people join and chat.
const names = new Map();

function learnName(user) {
  if (!user || user.id === me?.id || names.get(user.id) === user.name) return;
  names.set(user.id, user.name);
  const label = document.querySelector(`#videos .tile[data-user="${CSS.escape(user.id)}"] .tile-label`);
  if (label) label.textContent = user.name;
}

async function main() {
  client = await openClient(p, $("#conn"));
  me = whoAmI(client);
  const snap = await client.join(p.room);
  if (snap.room.title) $("#call-title").textContent = snap.room.title;
  else setText($("#call-title"), "call.title_room", { room: p.room });
  $("#online").textContent = String(snap.room.online || 1);
  if (snap.room.mode !== "call") toast(t("call.not_a_call"), "warn", 6000);

  const chat = new ChatList($("#chat"), 100);
  for (const ev of snap.room.recent || []) learnName(ev.data.user);
  chat.earlier(snap.room.recent);
  const room = client.room(p.room);
  room.on("barrage", (d) => {
    learnName(d.user);
    chat.barrage(d);
  });
  room.on("member.joined", (d) => {
    learnName(d.user);
    chat.system(t("chat.joined", { name: d.user.name }));
  });
  room.on("online", (d) => ($("#online").textContent = String(d.count)));
  $("#say-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("#say").value.trim();
    if (!text) return;
    if (await attempt(() => client.sendBarrage(p.room, text))) $("#say").value = "";
  });

  selfTile();
  emptyState();
  grid = client.followPublishers(p.room, $("#videos"), {
    exclude: [me.id],
    muted: false,
    makeTile: (entry) => h("div.tile", {}, h("video", { autoplay: true, playsInline: true }), h("span.tile-label", {}, names.get(entry.user) || entry.user)),
    onChange: () => count(),
  });
  $("#mic-btn").addEventListener("click", () => toggle("audio"));
  $("#cam-btn").addEventListener("click", () => (stream ? toggle("video") : joinOnCamera()));
  $("#leave-btn").addEventListener("click", leave);
  window.app = { client, me, grid };
  await joinOnCamera();
  document.body.dataset.ready = "1";
}

/** My own tile, first in the grid: my camera, or my initials and a way to turn it on. */
function selfTile() {
  const tile = h(
    "div.tile.self.cam-off",
    { id: "self-tile", dataset: { user: me.id, role: "call" } },
    h("video", { muted: true, autoplay: true, playsInline: true }),
    h(
      "div.cam-off-card",
      {},
      h("div.avatar.big", {}, initials(me.name)),
      setText(h("p"), "call.your_camera_off"),
      h("button.btn.small", { id: "self-cam-on", onclick: () => (stream ? toggle("video") : joinOnCamera()) }, icon("video"), setText(h("span"), "call.cam_on")),
    ),
    setText(h("span.tile-label"), "call.you", { name: me.name }),
  );
  tile.style.order = "-1";
  $("#videos").prepend(tile);
}

/** Alone in the call: say so, and how others get in. */
function emptyState() {
  const card = h(
    "div.call-empty",
    { id: "call-empty" },
    icon("users"),
    setText(h("b"), "call.empty.title"),
    h("p", {}, setText(h("span"), "call.empty.before"), h("code", {}, p.room), setText(h("span"), "call.empty.after")),
  );
  card.style.order = "99";
  $("#videos").append(card);
}

function count() {
  const remote = grid ? grid.tiles.size : 0;
  $("#call-empty").classList.toggle("hidden", remote > 0);
  $("#call-count").textContent = String(remote + (publication && publication.current ? 1 : 0));
  $("#videos").dataset.count = String($("#videos").querySelectorAll(":scope > :not(.hidden)").length);
}

async function joinOnCamera() {
  if (stream) return;
  if (client.publishers(p.room).length >= MAX_PARTICIPANTS) {
    toast(t("call.full", { n: MAX_PARTICIPANTS }), "warn", 8000);
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
  } catch (err) {
    toast(t("media.camera_unavailable", { detail: err.message || err }), "error");
    return;
  }
  $("#self-tile video").srcObject = stream;
  showControls();
  publication = new KeptPublication(client, p.room, stream, {
    onState: () => count(),
    onRetry: () => toast(t("media.dropped_reconnecting"), "warn"),
  });
  try {
    await publication.start();
  } catch (err) {
    toast(err.code === "forbidden" ? t("call.cannot_join_camera", { detail: err.message }) : t("call.not_on_camera", { detail: errorText(err) }), "error", 8000);
  }
  count();
}

function toggle(kind) {
  if (!stream) return;
  const tracks = kind === "audio" ? stream.getAudioTracks() : stream.getVideoTracks();
  const on = !(tracks[0] && tracks[0].enabled);
  for (const t of tracks) t.enabled = on;
  showControls();
}

/** Buttons and my tile say what the camera and microphone are doing now. */
function showControls() {
  const camOn = !!stream && stream.getVideoTracks().some((t) => t.enabled);
  const micOn = !!stream && stream.getAudioTracks().some((t) => t.enabled);
  $("#self-tile").classList.toggle("cam-off", !camOn);
  setControl($("#cam-btn"), camOn, camOn ? "call.cam_off" : "call.cam_on", camOn ? "call.caption.cam" : "call.caption.cam_off");
  setControl($("#mic-btn"), micOn, micOn ? "call.mic_mute" : "call.mic_unmute", micOn ? "call.caption.mic" : "call.caption.muted");
}

function setControl(btn, on, action, caption) {
  btn.classList.toggle("off", !on);
  btn.setAttribute("aria-pressed", String(on));
  // marked, so that a language switch re-translates them
  btn.dataset.i18nAriaLabel = action;
  btn.dataset.i18nTitle = action;
  btn.setAttribute("aria-label", t(action));
  btn.title = t(action);
  setText(btn.parentElement.querySelector(".ctl-caption"), caption);
}

async function leave() {
  if (publication) await publication.stop();
  for (const t of stream?.getTracks() || []) t.stop();
  grid.stop();
  client.close();
  location.href = "/";
}

main().catch(fatal);
