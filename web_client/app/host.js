// Host studio: camera and WHIP publishing, show control, selling, engagement, moderation,
// co-hosts and PK. The stage on the left is the same RoomView the viewers see.
import { $, $$, KeptPublication, attempt, compact, errorText, fatal, giftName, h, money, openAuthorised, openClient, pageParams, setText, startClock, t, toast, whoAmI } from "/app/common.js";
import { onLangChange } from "/app/i18n.js";
import { RoomView, initials } from "/app/roomview.js";
import { mountAssistantBoard } from "/app/assistant.js";

const p = pageParams("host");
let client;
let view;
let me;
const cam = { stream: null, publication: null, micOn: true };
const requests = new Map(); // request id -> {id, user, expires_at}
const pkInvites = new Map(); // pk id -> data
const chatters = new Map(); // user id -> name
let giftTotal = 0;
let gmvCents = 0;
let unitsSold = 0; // from order.created (exact); sale.stock events are sampled

const cents = (yuan) => Math.round(Number(yuan) * 100);
const num = (sel) => Number($(sel).value || 0);
const uid = (c) => (typeof c === "string" ? c : c && (c.user?.id ?? c.user ?? c.id));

// Demo products; their titles are in the page's language (a pinned title is what viewers see).
const PRESETS = [
  { id: "sku-scarf", key: "host.preset.scarf", price_cents: 12900 },
  { id: "sku-tea", key: "host.preset.tea", price_cents: 8800 },
  { id: "sku-lamp", key: "host.preset.lamp", price_cents: 15900 },
];

async function main() {
  client = await openClient(p, $("#conn"));
  me = whoAmI(client);
  view = new RoomView(client, p.room, me, {
    host: true,
    onUser: (u) => moderateUser(u),
    actions: { draw, giftFeed, cohostsChanged: renderCohosts },
    stageHint: hostStageHint,
  });
  const snap = await client.join(p.room);
  view.apply(snap);
  view.followVideos([me.id]);
  setText($("#studio-title"), "host.studio_room", { room: p.room });
  $("#title-input").value = snap.room.title || "";
  $("#kpi-online").textContent = compact(snap.room.online || 0);
  $("#kpi-likes").textContent = compact(snap.room.likes || 0);
  renderCohosts((snap.room.cohosts || []).map(uid));
  for (const ev of snap.room.recent || []) noteChatter(ev.data.user);
  syncLive(snap.room.state === "live");
  startClock();
  bindTabs();
  bindLive();
  bindSell();
  bindEngage();
  bindModerate();
  bindStage();
  mountAssistantBoard(client, p.room, $('[data-panel="live"]'));
  watchRoom();
  window.app = { client, view, me, cam };
  document.body.dataset.ready = "1";
  startCamera().catch(() => {});
}

function bindTabs() {
  for (const tab of $$(".tab")) {
    tab.addEventListener("click", () => {
      for (const t of $$(".tab")) t.classList.toggle("active", t === tab);
      for (const s of $$("[data-panel]")) s.classList.toggle("hidden", s.dataset.panel !== tab.dataset.tab);
    });
  }
}

function watchRoom() {
  const room = client.room(p.room); // this room's events only
  room.on("online", (d) => ($("#kpi-online").textContent = compact(d.count)));
  room.on("likes", (d) => ($("#kpi-likes").textContent = compact(d.total)));
  room.on("room.started", () => syncLive(true));
  room.on("room.ended", () => syncLive(false));
  room.on(
    "barrage",
    (d) => noteChatter(d.user),
  );
  room.on("sale.opened", (d) => setText($("#sale-state"), "host.sale.in_stock", { n: d.stock }));
  room.on(
    "sale.stock",
    (d) => {
      const s = view.state.sale;
      if (s && s.id === d.id) {
        setText($("#sale-state"), "product.left", { n: d.left });
      }
    },
  );
  room.on(
    "sale.closed",
    (d) => {
      setText($("#sale-state"), "host.sale.closed", { n: d.sold });
    },
  );
  room.on(
    "order.created",
    (d) => {
      const o = d.order;
      gmvCents += o.amount_cents ?? o.price_cents * o.qty;
      unitsSold += o.qty;
      $("#kpi-sold").textContent = compact(unitsSold);
      $("#orders-total").textContent = money(gmvCents);
      const list = $("#orders");
      list.querySelector(".empty")?.remove();
      list.prepend(h("div.item", { dataset: { order: o.id } }, h("div.avatar.small", {}, initials(o.user)), h("span.grow", {}, `${o.user} · ×${o.qty}`), h("b", {}, money(o.amount_cents ?? o.price_cents * o.qty))));
      while (list.childElementCount > 100) list.lastElementChild.remove();
    },
  );
  room.on("lottery.opened", (d) => setText($("#lottery-state"), "host.lottery.state_open", { prize: d.prize }));
  room.on("lottery.drawn", (d) =>
    (d.winners || []).length
      ? setText($("#lottery-state"), "host.lottery.state_drawn", { winners: d.winners.join(", ") })
      : setText($("#lottery-state"), "host.lottery.state_no_entrants"),
  );
  room.on("poll.opened", () => setText($("#poll-state"), "host.state.open"));
  room.on("poll.closed", () => setText($("#poll-state"), "host.state.closed"));
  room.on(
    "cohost.requested",
    (d) => {
      const r = d.request || d;
      requests.set(r.id, { id: r.id, user: uid(r.user ?? d.user), name: r.user?.name ?? d.user?.name, expires_at: r.expires_at });
      renderRequests();
      toast(t("host.requests.asks", { user: uid(r.user ?? d.user) }), "info");
    },
  );
  room.on(
    "cohost.expired",
    (d) => {
      const id = d.request?.id ?? d.id;
      requests.delete(id);
      renderRequests();
    },
  );
  room.on(
    "pk.invited",
    (d) => {
      const pk = d.pk || d;
      pkInvites.set(pk.id, { ...pk, from: d.from_room ?? pk.from_room ?? pk.room ?? (pk.rooms || [])[0] });
      renderPkInvites();
      toast(t("host.pk.challenge_from", { room: pkInvites.get(pk.id).from || t("host.pk.another_room") }), "info", 6000);
    },
  );
  const pkGone = (d) => {
    pkInvites.delete(d.id ?? d.pk?.id);
    renderPkInvites();
  };
  room.on("pk.rejected", (d) => (pkGone(d), toast(t("host.pk.declined"), "warn")));
  room.on("pk.expired", pkGone);
  room.on(
    "pk.started",
    (d) => {
      pkInvites.clear();
      renderPkInvites();
      setText($("#pk-state"), "host.pk.vs", { room: (d.rooms || []).find((r) => r !== p.room) });
      $("#pk-end-btn").classList.remove("hidden");
    },
  );
  room.on(
    "pk.ended",
    () => {
      setText($("#pk-state"), "host.state.ended");
      $("#pk-end-btn").classList.add("hidden");
    },
  );
}

// ---- live: camera, show, announcement, gifts ------------------------------------------------

function bindLive() {
  $("#cam-btn").addEventListener("click", () => (cam.stream ? stopCamera() : startCamera()));
  $("#mic-btn").addEventListener("click", () => {
    cam.micOn = !cam.micOn;
    for (const t of cam.stream?.getAudioTracks() || []) t.enabled = cam.micOn;
    setText($("#mic-btn"), cam.micOn ? "host.mic.mute" : "host.mic.unmute");
  });
  $("#publish-btn").addEventListener("click", () => (cam.publication ? unpublish() : publish()));
  $("#golive-btn").addEventListener("click", goLive);
  $("#stage-golive").addEventListener("click", goLive);
  $("#end-btn").addEventListener("click", endShow);
  $("#announce-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("#announce-input").value.trim();
    if (!text) return;
    const min = num("#announce-min");
    await attempt(() => client.announce(p.room, text, min ? Date.now() + min * 60_000 : undefined), t("host.announce.posted"));
  });
  $("#announce-clear").addEventListener("click", () => attempt(() => client.announce(p.room, ""), t("host.announce.cleared")));
}

/** Start the camera preview once (Go live may ask while the first request is still open). */
function startCamera() {
  if (!cam.starting) {
    cam.starting = openCamera().catch((err) => {
      cam.starting = null;
      view.renderPlaceholder();
      throw err;
    });
    view.renderPlaceholder();
  }
  return cam.starting;
}

async function openCamera() {
  try {
    cam.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true });
  } catch (err) {
    toast(t("media.camera_unavailable", { detail: err.message || err }), "error");
    throw err;
  }
  const tile = h(
    "div.tile.self",
    { id: "self-tile", dataset: { user: me.id, role: "host" } },
    h("video", { id: "preview", muted: true, autoplay: true, playsInline: true, srcObject: cam.stream }),
    setText(h("span.tile-label"), "host.you_preview"),
  );
  $("#videos").prepend(tile);
  $("#videos").dataset.count = String($("#videos").childElementCount);
  $("#placeholder").classList.add("hidden");
  setText($("#cam-btn"), "host.camera.stop");
  $("#mic-btn").disabled = false;
  $("#publish-btn").disabled = false;
  setText($("#cam-state"), "host.camera.on");
  updatePubState();
  updateStageNote();
}

async function stopCamera() {
  await unpublish();
  for (const t of cam.stream?.getTracks() || []) t.stop();
  cam.stream = null;
  cam.starting = null;
  $("#self-tile")?.remove();
  $("#videos").dataset.count = String($("#videos").childElementCount);
  setText($("#cam-btn"), "host.camera.start");
  $("#mic-btn").disabled = true;
  $("#publish-btn").disabled = true;
  setText($("#cam-state"), "host.camera.off");
  view.renderPlaceholder();
  updatePubState();
  updateStageNote();
}

async function publish() {
  if (cam.publication) return true;
  await startCamera();
  if (cam.publication) return true; // published while the camera started
  const kept = new KeptPublication(client, p.room, cam.stream, {
    layers: true, // a low layer for viewers on slow links (issue 14)
    onState: updatePubState,
    onRetry: () => {
      updatePubState();
      toast(t("host.pub.dropped"), "warn");
    },
    onGiveUp: () => {
      if (cam.publication === kept) cam.publication = null;
      updatePubState();
    },
  });
  cam.publication = kept;
  try {
    await kept.start();
    return true;
  } catch (err) {
    toast(t("host.pub.failed", { detail: errorText(err) }), "error", 6000);
    return false;
  } finally {
    updatePubState();
  }
}

async function unpublish() {
  const pub = cam.publication;
  cam.publication = null;
  if (pub) await pub.stop();
  updatePubState();
}

function updatePubState() {
  const el = $("#pub-state");
  const state = cam.publication ? cam.publication.state : null;
  const key = cam.publication ? (state === "connected" ? "host.pub.on_air" : "host.pub.publishing") : cam.stream ? "host.pub.preview" : "host.pub.camera_off";
  setText(el, key, cam.publication && state !== "connected" ? { state } : undefined);
  el.classList.toggle("on", state === "connected");
  setText($("#publish-btn"), cam.publication ? "host.publish_stop" : "host.publish");
}

function syncLive(live) {
  $("#golive-btn").classList.toggle("hidden", live);
  $("#end-btn").classList.toggle("hidden", !live);
  updateStageNote();
}

/** The empty stage tells the host what to do next (the camera is off). */
function hostStageHint(s) {
  const start = { key: "host.camera.start", run: () => startCamera().catch(() => {}) };
  if (cam.starting && !cam.stream) return { key: "host.hint.starting" };
  if (s.roomState === "live") return { key: "host.hint.live_no_video", action: start };
  if (s.roomState === "ended") return { key: "host.hint.ended", action: start };
  return { key: "host.hint.idle", action: start };
}

/** Over the preview: a reminder that viewers do not see it until Go live. */
function updateStageNote() {
  const live = $("#golive-btn").classList.contains("hidden");
  $("#stage-note").classList.toggle("hidden", live || !cam.stream);
}

async function goLive() {
  const title = $("#title-input").value.trim();
  const ok = await attempt(() => client.start(p.room, title || undefined), t("host.you_are_live"));
  if (ok) {
    syncLive(true);
    await publish();
  }
}

async function endShow() {
  const res = await attempt(() => client.end(p.room));
  if (!res) return;
  await unpublish();
  syncLive(false);
  const s = res.summary || {};
  view.modal(
    h(
      "div.modal-card",
      {},
      setText(h("h3"), "host.ended.title"),
      setText(h("p.muted"), "host.ended.summary", { min: Math.round((s.duration_s || 0) / 60), likes: compact(s.likes || 0), online: s.online ?? 0 }),
      h("div.row", {}, h("button.btn.ghost", { onclick: () => openAuthorised(`/v1/rooms/${encodeURIComponent(p.room)}/report?format=html`, client.token) }, t("host.ended.report")), h("button.btn", { onclick: () => view.modal(null) }, t("common.close"))),
    ),
  );
}

function giftFeed(d) {
  giftTotal += d.value;
  $("#kpi-gifts").textContent = compact(giftTotal);
  setText($("#gift-total"), "host.coins", { n: compact(giftTotal) });
  const feed = $("#gift-feed");
  feed.querySelector(".empty")?.remove();
  feed.prepend(h("div.item", {}, h("div.avatar.small", {}, initials(d.user.name)), h("span.grow", {}, `${d.user.name} · ${giftName(d.gift)} ×${d.count}`), h("b", {}, d.value)));
  while (feed.childElementCount > 50) feed.lastElementChild.remove();
}

// ---- sell ------------------------------------------------------------------------------------

function currentProduct() {
  const product = { id: $("#pin-id").value.trim(), title: $("#pin-title").value.trim(), price_cents: cents($("#pin-price").value) };
  const image = $("#pin-image").value.trim();
  if (image) product.image = image;
  return product;
}

function renderPresets() {
  $("#presets").replaceChildren(
    ...PRESETS.map((pr) =>
      h(
        "button.preset",
        {
          type: "button",
          onclick: () => {
            $("#pin-id").value = pr.id;
            $("#pin-title").value = t(pr.key);
            $("#pin-price").value = (pr.price_cents / 100).toFixed(2);
            $("#pin-image").value = "";
          },
        },
        h("div.avatar.small", {}, t(pr.key)[0]),
        h("span", {}, t(pr.key).split(" ·")[0], h("small", {}, money(pr.price_cents))),
      ),
    ),
  );
}

function bindSell() {
  renderPresets();
  onLangChange(renderPresets);
  $("#pin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    await attempt(() => client.pinProduct(p.room, currentProduct()), t("host.pin.pinned"));
  });
  $("#unpin-btn").addEventListener("click", () => attempt(() => client.unpinProduct(p.room), t("host.pin.unpinned")));
  $("#sale-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const params = {
      product: currentProduct(),
      price_cents: cents($("#sale-price").value),
      stock: num("#sale-stock"),
      limit_per_user: num("#sale-limit"),
    };
    if (num("#sale-duration")) params.duration_ms = num("#sale-duration") * 1000;
    if (num("#sale-delay")) params.starts_at = Date.now() + num("#sale-delay") * 1000;
    await attempt(() => client.createSale(p.room, params), t("host.sale.started"));
  });
  $("#coupon-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    await attempt(
      () =>
        client.issueCoupon(p.room, {
          title: $("#coupon-title").value.trim(),
          discount_cents: cents($("#coupon-off").value),
          min_spend_cents: cents($("#coupon-min").value || 0),
          quantity: num("#coupon-qty"),
          per_user: num("#coupon-per"),
        }),
      t("host.coupon.issued"),
    );
  });
}

// ---- engage --------------------------------------------------------------------------------

function bindEngage() {
  $("#lottery-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const params = { prize: $("#lottery-prize").value.trim(), winners: num("#lottery-winners"), duration_ms: num("#lottery-duration") * 1000 };
    const kw = $("#lottery-keyword").value.trim();
    if (kw) params.keyword = kw;
    if (num("#lottery-watch")) params.min_watch_s = num("#lottery-watch");
    if (num("#lottery-tier")) params.min_tier = num("#lottery-tier");
    await attempt(() => client.createLottery(p.room, params), t("host.lottery.opened"));
  });
  $("#lottery-draw").addEventListener("click", () => {
    const l = view.state.lottery;
    if (!l || l.state === "drawn") return toast(t("host.lottery.none_open"), "warn");
    draw(l);
  });
  $("#packet-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const params = { total_cents: cents($("#packet-total").value), count: num("#packet-count") };
    const msg = $("#packet-msg").value.trim();
    if (msg) params.message = msg;
    await attempt(() => client.sendRedPacket(p.room, params), t("host.packet.sent"));
  });
  $("#poll-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const options = $("#poll-options").value.split("\n").map((s) => s.trim()).filter(Boolean);
    await attempt(() => client.createPoll(p.room, { question: $("#poll-q").value.trim(), options, duration_ms: num("#poll-duration") * 1000 }), t("host.poll.started"));
  });
}

async function draw(l) {
  await attempt(() => client.drawLottery(p.room, l.id));
}

// ---- moderate ------------------------------------------------------------------------------

function bindModerate() {
  const target = () => $("#mod-user").value.trim();
  $("#mute-btn").addEventListener("click", () => modAction("mute", target()));
  $("#unmute-btn").addEventListener("click", () => modAction("unmute", target()));
  $("#kick-btn").addEventListener("click", () => modAction("kick", target()));
  $("#slow-btn").addEventListener("click", () => attempt(() => client.setSlowMode(p.room, Number($("#slow-select").value)), t("host.slow.updated")));
  const words = () => $("#words-input").value.split(",").map((w) => w.trim()).filter(Boolean);
  const applyWords = async (change) => {
    const res = await attempt(() => client.setBannedWords(p.room, change));
    if (res) {
      setText($("#words-count"), "host.words.count", { n: res.count });
      $("#words-input").value = "";
      toast(t("host.words.updated"), "ok");
    }
  };
  $("#words-add").addEventListener("click", () => applyWords({ add: words() }));
  $("#words-remove").addEventListener("click", () => applyWords({ remove: words() }));
}

async function modAction(kind, user) {
  if (!user) return toast(t("host.mod.enter_user"), "warn");
  const dur = num("#mod-duration") || undefined;
  const run = { mute: () => client.mute(p.room, user, dur), unmute: () => client.unmute(p.room, user), kick: () => client.kick(p.room, user, dur) }[kind];
  const done = t(`host.mod.done.${kind}`, { user });
  return attempt(run, done);
}

function moderateUser(u) {
  if (u.id === me.id) return;
  view.modal(
    h(
      "div.modal-card",
      {},
      h("h3", {}, u.name),
      h("p.muted", {}, u.id),
      h(
        "div.row",
        {},
        h("button.btn.warn.small", { onclick: () => (view.modal(null), modAction("mute", u.id)) }, t("host.mod.mute")),
        h("button.btn.ghost.small", { onclick: () => (view.modal(null), modAction("unmute", u.id)) }, t("host.mod.unmute")),
        h("button.btn.danger.small", { onclick: () => (view.modal(null), modAction("kick", u.id)) }, t("host.mod.kick")),
        h("button.btn.violet.small", { onclick: () => (view.modal(null), attempt(() => client.inviteCohost(p.room, u.id), t("host.invite.sent"))) }, t("host.invite.on_camera")),
        h("button.btn.ghost.small", { onclick: () => view.modal(null) }, t("common.close")),
      ),
    ),
  );
}

function noteChatter(user) {
  if (!user || user.id === me.id) return;
  chatters.delete(user.id);
  chatters.set(user.id, user.name);
  while (chatters.size > 12) chatters.delete(chatters.keys().next().value);
  renderChatters();
}

function renderChatters() {
  const list = $("#chatters");
  list.replaceChildren(
    ...[...chatters].reverse().map(([id, name]) =>
      h(
        "div.item",
        { dataset: { user: id } },
        h("div.avatar.small", {}, initials(name)),
        h("span.grow", { title: id }, `${name} `, h("small.muted", {}, id)),
        h("button.btn.warn.small", { onclick: () => modAction("mute", id) }, setText(h("span"), "host.mod.mute")),
        h("button.btn.danger.small", { onclick: () => modAction("kick", id) }, setText(h("span"), "host.mod.kick")),
      ),
    ),
  );
}

// ---- co-hosts and PK -------------------------------------------------------------------------

function bindStage() {
  $("#invite-btn").addEventListener("click", async () => {
    const user = $("#invite-user").value.trim();
    if (!user) return toast(t("host.invite.enter_user"), "warn");
    await attempt(() => client.inviteCohost(p.room, user), t("host.invite.sent_to", { user }));
  });
  $("#pk-invite-btn").addEventListener("click", async () => {
    const target = $("#pk-room").value.trim();
    if (!target) return toast(t("host.pk.enter_room"), "warn");
    const res = await attempt(() => client.invitePk(p.room, target, num("#pk-duration") || 300), t("host.pk.sent_to", { room: target }));
    if (res) {
      view.state.pkPending = res.pk?.id;
      setText($("#pk-state"), "host.pk.waiting", { room: target });
    }
  });
  $("#pk-end-btn").addEventListener("click", () => {
    const pk = view.state.pk;
    if (pk) attempt(() => client.endPk(p.room, pk.id));
  });
}

function renderRequests() {
  const list = $("#requests");
  const dot = $("#req-dot");
  dot.textContent = String(requests.size);
  dot.classList.toggle("hidden", requests.size === 0);
  if (!requests.size) return list.replaceChildren(setText(h("div.empty"), "host.requests.none"));
  list.replaceChildren(
    ...[...requests.values()].map((r) =>
      h(
        "div.item",
        { dataset: { request: r.id, user: r.user } },
        h("div.avatar.small", {}, initials(r.name || r.user)),
        h("span.grow", {}, r.name || r.user, " ", r.expires_at ? h("small.muted", { dataset: { until: r.expires_at } }) : null),
        h(
          "button.btn.ok.small",
          {
            onclick: async () => {
              const ok = await attempt(() => client.acceptCohost(p.room, { request: r.id, user: r.user }), t("host.requests.joining", { user: r.user }));
              if (ok) requests.delete(r.id);
              renderRequests();
            },
          },
          setText(h("span"), "host.accept"),
        ),
        h(
          "button.btn.ghost.small",
          {
            onclick: async () => {
              await attempt(() => client.rejectCohost(p.room, { request: r.id, user: r.user }));
              requests.delete(r.id);
              renderRequests();
            },
          },
          setText(h("span"), "host.decline"),
        ),
      ),
    ),
  );
}

function renderCohosts(users) {
  const list = $("#cohosts");
  if (!users.length) return list.replaceChildren(setText(h("div.empty"), "host.cohosts.none"));
  list.replaceChildren(
    ...users.map((u) =>
      h(
        "div.item",
        { dataset: { user: u } },
        h("div.avatar.small", {}, initials(u)),
        h("span.grow", {}, u),
        h("button.btn.danger.small", { onclick: () => attempt(() => client.endCohost(p.room, u), t("chat.left_stage", { user: u })) }, setText(h("span"), "host.cohosts.remove")),
      ),
    ),
  );
}

function renderPkInvites() {
  const list = $("#pk-invites");
  list.replaceChildren(
    ...[...pkInvites.values()].map((pk) =>
      h(
        "div.item",
        { dataset: { pk: pk.id } },
        setText(h("span.grow"), "host.pk.challenges_you", { room: pk.from || t("host.pk.a_room") }),
        h("button.btn.ok.small", { onclick: () => attempt(() => client.acceptPk(p.room, pk.id)) }, setText(h("span"), "host.accept")),
        h(
          "button.btn.ghost.small",
          {
            onclick: async () => {
              await attempt(() => client.rejectPk(p.room, pk.id));
              pkInvites.delete(pk.id);
              renderPkInvites();
            },
          },
          setText(h("span"), "host.decline"),
        ),
      ),
    ),
  );
}

main().catch(fatal);
