// Viewer page: watch, chat, like, gift, buy, enter lotteries, grab red packets, claim
// coupons, vote, and ask to join the host on camera.
import { $, KeptPublication, attempt, errorText, fatal, flyHearts, giftIcon, giftName, h, icon, money, number, openClient, pageParams, setText, startClock, t, toast, whoAmI } from "/app/common.js";
import { RoomView } from "/app/roomview.js";
import { NextShow, bindShare, joinWithRef } from "/app/nextshow.js";
import { HlsFallback } from "/app/hlsfallback.js";

const p = pageParams("viewer");
let client;
let view;
let me;
let stage = null; // {publication, stream} while on camera as a co-host
let hls; // the host through live HLS when WHEP cannot play it (or ?playback=hls)

async function main() {
  client = await openClient(p, $("#conn"));
  me = whoAmI(client);
  view = new RoomView(client, p.room, me, {
    actions: { buy, enterLottery, grab, claim, vote, cohostsChanged },
  });
  const next = new NextShow(client, p.room, me);
  const snap = await joinWithRef(client, p.room);
  view.apply(snap);
  next.apply(snap);
  bindShare(client, p.room);
  view.followVideos([me.id]);
  // HLS from the start: asked for in the URL, or the room's `playback` setting (read at join,
  // then followed through `room.playback`).
  const pinned = new URLSearchParams(location.search).get("playback") === "hls";
  hls = new HlsFallback(client, p.room, view, { forced: snap.room.playback === "hls", pinned });
  renderGifts(snap.room.gifts || []);
  startClock();
  bindActionBar();
  const room = client.room(p.room);
  room.on("room.playback", (d) => hls.setPlayback(d.playback)); // the operator switched it mid-show
  room.on("cohost.invited", (d) => {
    if (d.user == null || d.user === me.id || d.user?.id === me.id) invited(d);
  });
  room.on("cohost.expired", () => {
    toast(t("viewer.cohost.expired"), "warn");
    showAsked(null);
  });
  window.app = { client, view, me, hls };
  document.body.dataset.ready = "1";
}

// ---- action bar -------------------------------------------------------------------------

function bindActionBar() {
  const input = $("#say");
  $("#say-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    try {
      const res = await client.sendBarrage(p.room, text);
      input.value = "";
      if (res.shed) toast(t("viewer.shed"), "warn");
    } catch (err) {
      toast(errorText(err), "error");
      input.classList.add("shake");
      setTimeout(() => input.classList.remove("shake"), 500);
    }
  });

  // Taps are summed and sent at most ~3 times a second (the server aggregates likes anyway).
  let pending = 0;
  let timer = null;
  $("#like-btn").addEventListener("click", () => {
    pending += 1;
    view.liked(1);
    flyHearts($("#hearts"), 1);
    $("#like-btn").classList.remove("pop");
    void $("#like-btn").offsetWidth;
    $("#like-btn").classList.add("pop");
    if (!timer) {
      timer = setTimeout(async () => {
        const n = Math.min(100, pending);
        pending -= n;
        timer = null;
        await attempt(() => client.sendLike(p.room, n));
      }, 300);
    }
  });

  $("#gift-btn").addEventListener("click", () => $("#gift-sheet").classList.toggle("hidden"));
  for (const x of document.querySelectorAll("[data-close]")) {
    if (!(x instanceof HTMLElement)) continue;
    x.addEventListener("click", () => $(`#${x.dataset.close}`).classList.add("hidden"));
  }
  $("#sound-btn").addEventListener("click", () => {
    const muted = !view.muted;
    view.muted = muted;
    if (view.videos) view.videos.setMuted(muted);
    hls.setMuted(muted);
    $("#sound-btn").replaceChildren(icon(muted ? "sound-off" : "sound-on"));
  });
  view.muted = true;
  $("#cohost-btn").addEventListener("click", askToJoin);
}

function renderGifts(gifts) {
  const grid = $("#gift-grid");
  grid.replaceChildren(
    ...gifts.map((g) =>
      h(
        "button.gift-item",
        {
          dataset: { gift: g.id },
          onclick: async () => {
            const res = await attempt(() => client.sendGift(p.room, g.id, 1));
            if (res) $("#gift-sheet").classList.add("hidden");
          },
        },
        giftIcon(g.id, "gift-big"),
        h("span", {}, giftName(g)),
        h("small", {}, t("viewer.coins", { n: number(g.value) })),
      ),
    ),
  );
}

// ---- commerce and activities ----------------------------------------------------------------

async function buy(product, sale, btn) {
  if (!sale) {
    await attempt(() => client.track(p.room, "cart.add", product.id), t("viewer.added_to_cart"));
    return;
  }
  btn.disabled = true;
  btn.textContent = "…";
  try {
    const { order } = await client.buy(p.room, sale.id, 1);
    toast(t("viewer.order_placed", { title: product.title, price: money(order.price_cents * order.qty) }), "ok", 5000);
    btn.textContent = t("product.bought");
    btn.classList.add("done");
    setTimeout(() => view.renderProduct(), 2500);
  } catch (err) {
    toast(errorText(err), "error", 5000);
    if (err.code === "sold_out") {
      sale.left = 0;
      view.renderProduct();
    } else {
      btn.disabled = false;
      btn.textContent = t("product.buy");
    }
  }
}

async function enterLottery(l) {
  const res = await attempt(() => client.enterLottery(p.room, l.id), t("viewer.lottery_entered"));
  if (res) {
    l.entered = true;
    view.renderLottery();
  }
}

async function grab(packet) {
  try {
    const res = await client.grabRedPacket(p.room, packet.id);
    packet.grabbed = res.amount_cents;
    toast(t("viewer.packet_got", { amount: money(res.amount_cents) }), "ok");
  } catch (err) {
    toast(errorText(err), "error");
    packet.missed = errorText(err);
  }
  view.renderPacket(packet.id);
}

async function claim(coupon) {
  try {
    await client.claimCoupon(p.room, coupon.id);
    coupon.claimed = true;
    toast(t("viewer.coupon_claimed"), "ok");
  } catch (err) {
    toast(errorText(err), "error");
    if (err.code === "sold_out" || err.code === "limit_reached") coupon.gone = err.code === "sold_out" ? "coupon.all_claimed" : "coupon.claimed_short";
  }
  view.renderCoupon(coupon.id);
}

async function vote(poll, option) {
  try {
    await client.vote(p.room, poll.id, option);
    poll.voted = option;
    poll.counts = poll.counts.map((c, i) => (i === option ? c + 1 : c));
  } catch (err) {
    toast(errorText(err), "error");
    if (err.code === "conflict") poll.voted = -1;
  }
  view.renderPoll();
}

// ---- co-hosting ----------------------------------------------------------------------------

let asked = null; // {id, timer} while my request to join on camera waits for the host

async function askToJoin() {
  if (stage) return leaveStage();
  if (asked) return toast(t("viewer.cohost.pending"), "info");
  const res = await attempt(() => client.requestCohost(p.room), t("viewer.cohost.sent"));
  if (res) showAsked(res.request);
}

/** The button keeps saying a request is pending (a toast is gone after a few seconds). */
function showAsked(request) {
  clearTimeout(asked?.timer);
  asked = request ? { id: request.id, timer: setTimeout(() => showAsked(null), Math.max(0, request.expires_at - Date.now())) } : null;
  const btn = $("#cohost-btn");
  btn.classList.toggle("pending", !!asked);
  const label = asked ? "viewer.cohost.waiting" : stage ? "viewer.cohost.leave" : "viewer.cohost.join";
  btn.dataset.i18nTitle = label; // re-translated on a language switch
  btn.dataset.i18nAriaLabel = label;
  btn.title = t(label);
  btn.setAttribute("aria-label", t(label));
}

function invited(d) {
  view.modal(
    h(
      "div.modal-card",
      {},
      setText(h("h3"), "viewer.invite.title"),
      setText(h("p"), "viewer.invite.text", { name: d.by?.name || d.by || t("viewer.invite.the_host") }),
      h(
        "div.row",
        {},
        h(
          "button.btn.ghost",
          {
            onclick: () => {
              view.modal(null);
              client.rejectCohost(p.room, { user: me.id }).catch(() => {});
            },
          },
          t("viewer.invite.not_now"),
        ),
        h(
          "button.btn",
          {
            id: "accept-invite",
            onclick: async () => {
              view.modal(null);
              await attempt(() => client.acceptCohost(p.room, { user: me.id }));
            },
          },
          t("viewer.invite.join"),
        ),
      ),
    ),
  );
}

/** The co-host list changed: go on (or off) camera when it concerns me. */
async function cohostsChanged(users) {
  const onStage = users.includes(me.id);
  if (onStage) showAsked(null);
  if (onStage && !stage) await goOnStage();
  else if (!onStage && stage) await leaveStage(false);
}

async function goOnStage() {
  stage = { publication: null, stream: null };
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
    stage.stream = stream;
    const tile = h("div.tile.self", { id: "self-tile", dataset: { user: me.id, role: "cohost" } }, h("video", { muted: true, autoplay: true, playsInline: true, srcObject: stream }), setText(h("span.tile-label"), "viewer.you_cohost"));
    $("#videos").append(tile);
    $("#videos").dataset.count = String($("#videos").childElementCount);
    const kept = new KeptPublication(client, p.room, stream, {
      onRetry: () => toast(t("media.dropped_reconnecting"), "warn"),
    });
    stage.publication = kept;
    await kept.start();
    $("#cohost-btn").classList.add("active");
    showAsked(null);
    toast(t("viewer.on_camera"), "ok");
  } catch (err) {
    toast(errorText(err), "error");
    await leaveStage(false);
  }
}

async function leaveStage(tellServer = true) {
  const s = stage;
  stage = null;
  if (!s) return;
  if (s.publication) await s.publication.stop();
  if (s.stream) for (const t of s.stream.getTracks()) t.stop();
  const tile = $("#self-tile");
  if (tile) tile.remove();
  $("#videos").dataset.count = String($("#videos").childElementCount);
  $("#cohost-btn").classList.remove("active");
  showAsked(null);
  if (tellServer) await attempt(() => client.endCohost(p.room, me.id));
}

main().catch(fatal);
