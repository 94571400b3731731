// Live HLS fallback for the viewer page (issue 14). The host's WHEP playback is watched: when
// its <video> shows no media within NO_MEDIA_MS (a WHEP error, ICE `failed`, nothing decoded),
// or the page is opened with ?playback=hls, and the room has a live HLS rendition (its playlist
// answers 200), the host is played with hls.js (vendored; Safari without MSE: natively) in a
// tile of its own, and the host's WHEP playback is stopped. The WebSocket (barrage, likes,
// commerce) is not touched: only where the host's picture comes from changes. The room's
// `playback` setting changing while the page is open (`room.playback`) switches it either way.
import { $, h, setText, t, toast } from "/app/common.js";

const NO_MEDIA_MS = 8000; // a WHEP playback that decodes nothing for this long has failed
const CHECK_MS = 1000;
const PROBE_MS = 3000; // between playlist probes while the room has no rendition (yet)
const HLS_JS = "/vendor/hlsjs/hls.min.js";

export class HlsFallback {
  /**
   * @param {any} client the page's RoomClient (its token authorises the HLS requests)
   * @param {string} room
   * @param {any} view the page's RoomView (its `videos` follow the publishers with WHEP)
   * @param {{forced?: boolean, pinned?: boolean}} [options] forced: HLS from the start (the
   *   room's `playback`, or ?playback=hls); pinned: the URL asked for it, so the room's
   *   setting going back to WebRTC does not switch this page back
   */
  constructor(client, room, view, options = {}) {
    this.client = client;
    this.room = room;
    this.view = view;
    this.forced = !!options.forced || !!options.pinned;
    this.pinned = !!options.pinned;
    this.excluded = new Set(); // publishers this page stopped playing with WHEP
    this.playlist = `/v1/rooms/${encodeURIComponent(room)}/hls/index.m3u8`;
    this.active = null; // {tile, video, hls} while HLS plays
    this.busy = false;
    this.lastProbe = 0;
    this.firstSeen = new WeakMap(); // WHEP tile -> when it appeared
    this.muted = true;
    this.timer = setInterval(() => this._check(), CHECK_MS);
  }

  /** The WHEP tile of the host, if the page follows one. */
  _hostTile() {
    const tiles = this.view.videos ? [...this.view.videos.tiles.values()] : [];
    return tiles.find((tile) => tile.entry.role === "host") || null;
  }

  async _check() {
    let tile = this._hostTile();
    if (tile && (this.forced || this.active)) {
      this._dropWhep(tile.entry.user);
      tile = null;
    }
    if (this.active || this.busy) return;
    if (!this.forced) {
      if (!tile) return;
      if (!this.firstSeen.has(tile)) this.firstSeen.set(tile, Date.now());
      const video = tile.video;
      if (video.currentTime > 0 && video.videoWidth > 0) return this.firstSeen.set(tile, Infinity);
      if (Date.now() - this.firstSeen.get(tile) < NO_MEDIA_MS) return;
    }
    if (Date.now() - this.lastProbe < PROBE_MS) return;
    this.busy = true;
    try {
      this.lastProbe = Date.now();
      if (await this._hasRendition()) await this._switch(tile);
    } finally {
      this.busy = false;
    }
  }

  async _hasRendition() {
    try {
      const res = await fetch(this.playlist, { headers: { Authorization: `Bearer ${this.client.token}` }, cache: "no-store" });
      return res.status === 200;
    } catch {
      return false;
    }
  }

  /** The host is no longer played with WHEP on this page. */
  _dropWhep(user) {
    this.excluded.add(user);
    this.view.videos.options.exclude.push(user);
    this.view.videos.update(this.client.publishers(this.room));
  }

  /**
   * The room's `playback` changed while the page is open (`room.playback`): "hls" switches
   * to the live HLS at the next check (within a second); null goes back to WebRTC, unless
   * the page's URL asked for HLS.
   */
  setPlayback(playback) {
    if (playback === "hls") {
      this.forced = true;
      this.lastProbe = 0;
      return;
    }
    if (this.pinned) return;
    this.forced = false;
    this._stop();
    this.forced = false; // _stop keeps a page on HLS after a failure; this is the room's word
    const exclude = this.view.videos.options.exclude;
    for (const user of this.excluded) {
      const at = exclude.indexOf(user);
      if (at >= 0) exclude.splice(at, 1);
    }
    this.excluded.clear();
    this.firstSeen = new WeakMap(); // the new WHEP tile gets NO_MEDIA_MS of its own
    this.view.videos.update(this.client.publishers(this.room));
  }

  /** Stop the host's WHEP playback (if any) and play the rendition in an HLS tile. */
  async _switch(whepTile) {
    const user = whepTile ? whepTile.entry.user : "host";
    if (whepTile) this._dropWhep(user);
    const video = /** @type {HTMLVideoElement} */ (h("video", { muted: this.muted, autoplay: true, playsInline: true }));
    video.muted = this.muted;
    const badge = setText(h("span.badge.hls", { id: "hls-badge" }), "viewer.hls.badge");
    const tile = h("div.tile", { id: "hls-tile", dataset: { user, role: "host", playback: "hls" } }, video, badge);
    tile.style.order = "0";
    $("#videos").prepend(tile);
    $("#videos").dataset.count = String($("#videos").childElementCount);
    this.view.renderPlaceholder();
    this.active = { tile, video, hls: null };
    if (!this.forced) toast(t("viewer.hls.fallback"), "info", 5000);
    const Hls = await loadHlsJs();
    if (Hls && Hls.isSupported()) {
      const hls = new Hls({ xhrSetup: (xhr) => xhr.setRequestHeader("Authorization", `Bearer ${this.client.token}`) });
      this.active.hls = hls;
      hls.on(Hls.Events.ERROR, (_, data) => {
        if (data.fatal) this._stop(); // probed again: the show may be over, or restart
      });
      hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
      hls.loadSource(this.playlist);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      // Native HLS (iOS Safari without MSE) cannot send a header: the token rides in the URL.
      video.src = `${this.playlist}?token=${encodeURIComponent(this.client.token)}`;
      video.addEventListener("error", () => this._stop(), { once: true });
      video.play().catch(() => {});
    } else this._stop();
  }

  _stop() {
    const a = this.active;
    this.active = null;
    if (!a) return;
    if (a.hls) a.hls.destroy();
    a.video.removeAttribute("src");
    a.tile.remove();
    $("#videos").dataset.count = String($("#videos").childElementCount);
    this.view.renderPlaceholder();
    this.lastProbe = Date.now();
    this.forced = true; // WHEP stays off for the host on this page: HLS is probed again
  }

  setMuted(muted) {
    this.muted = muted;
    if (this.active) this.active.video.muted = muted;
  }
}

/** hls.js is loaded only when a page falls back to it. */
let hlsJs = null;
function loadHlsJs() {
  const w = /** @type {any} */ (window);
  if (w.Hls) return Promise.resolve(w.Hls);
  hlsJs ||= new Promise((resolve) => {
    const s = document.createElement("script");
    s.src = HLS_JS;
    s.onload = () => resolve(w.Hls || null);
    s.onerror = () => resolve(null);
    document.head.append(s);
  });
  return hlsJs;
}
