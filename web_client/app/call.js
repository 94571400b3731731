// Call page (`mode: call` rooms): everyone publishes, everyone plays everyone; up to 9.
import { $, ChatList, attempt, errorText, fatal, h, openClient, pageParams, toast, whoAmI } from "/app/common.js";

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
  $("#call-title").textContent = snap.room.title || `Call · ${p.room}`;
  $("#online").textContent = String(snap.room.online || 1);
  if (snap.room.mode !== "call") toast("This is a live room, not a call: only the host and co-hosts can be on camera.", "warn", 6000);

  const chat = new ChatList($("#chat"), 100);
  client.on("barrage", (d, m) => {
    if (m.room !== p.room) return;
    learnName(d.user);
    chat.barrage(d);
  });
  client.on("member.joined", (d, m) => {
    if (m.room !== p.room) return;
    learnName(d.user);
    chat.system(`${d.user.name} joined`);
  });
  client.on("online", (d, m) => m.room === p.room && ($("#online").textContent = String(d.count)));
  $("#say-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("#say").value.trim();
    if (!text) return;
    if (await attempt(() => client.sendBarrage(p.room, text))) $("#say").value = "";
  });

  grid = client.followPublishers(p.room, $("#videos"), {
    exclude: [me.id],
    muted: false,
    makeTile: (entry) => h("div.tile", {}, h("video", { autoplay: true, playsInline: true }), h("span.tile-label", {}, names.get(entry.user) || entry.user)),
    onChange: (entries) => count(entries.length),
  });
  await joinOnCamera();
  $("#mic-btn").addEventListener("click", () => toggle("audio", $("#mic-btn")));
  $("#cam-btn").addEventListener("click", () => toggle("video", $("#cam-btn")));
  $("#leave-btn").addEventListener("click", leave);
  window.app = { client, me, grid };
  document.body.dataset.ready = "1";
}

function count(remote) {
  const n = remote + (stream ? 1 : 0);
  $("#call-count").textContent = String(n);
  $("#videos").dataset.count = String($("#videos").childElementCount);
}

async function joinOnCamera() {
  if (client.publishers(p.room).length >= MAX_PARTICIPANTS) {
    toast(`The call is full (${MAX_PARTICIPANTS} people on camera). You can still watch and chat.`, "warn", 8000);
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
  } catch (err) {
    toast(`Camera unavailable: ${err.message || err}`, "error");
    return;
  }
  const tile = h(
    "div.tile.self",
    { id: "self-tile", dataset: { user: me.id, role: "call" } },
    h("video", { muted: true, autoplay: true, playsInline: true, srcObject: stream }),
    h("span.tile-label", {}, `${me.name} (you)`),
  );
  tile.style.order = "-1";
  $("#videos").prepend(tile);
  count(grid.tiles.size);
  try {
    publication = await client.publish(p.room, stream);
  } catch (err) {
    toast(err.code === "forbidden" ? `You cannot join on camera: ${err.message}` : `Not on camera: ${errorText(err)}`, "error", 8000);
  }
}

function toggle(kind, btn) {
  if (!stream) return;
  const tracks = kind === "audio" ? stream.getAudioTracks() : stream.getVideoTracks();
  const on = !(tracks[0] && tracks[0].enabled);
  for (const t of tracks) t.enabled = on;
  btn.classList.toggle("off", !on);
}

async function leave() {
  if (publication) await publication.stop();
  for (const t of stream?.getTracks() || []) t.stop();
  grid.stop();
  client.close();
  location.href = "/";
}

main().catch(fatal);
