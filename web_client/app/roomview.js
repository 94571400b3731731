// The live stage shared by the viewer and host pages: it applies the join snapshot and the
// room's events to one state object and renders the overlays (stats, barrage, chat, product
// and flash sale, lottery, red packets, coupons, poll, announcement, PK bar, videos).
// Actions that differ per page (buy, vote, draw…) are passed in as callbacks.
import { $, ChatList, Danmaku, attempt, compact, flyHearts, giftIcon, giftName, h, icon, money, openAuthorised, setText, t, toast } from "/app/common.js";
import { onLangChange } from "/app/i18n.js";
import { verifyLottery } from "/app/verify.js";
import { answerLine } from "/app/assistant.js";

const userId = (c) => (typeof c === "string" ? c : c && (c.user?.id ?? c.user ?? c.id));

export class RoomView {
  /**
   * @param {import("/sdk/roomserver.js").RoomClient} client
   * @param {string} room
   * @param {{id: string, name: string, role: string}} me
   * @param {object} opts  {host: bool, actions: {...}}
   */
  constructor(client, room, me, opts = {}) {
    this.client = client;
    this.room = room;
    this.me = me;
    this.isHost = !!opts.host;
    this.actions = opts.actions || {};
    this.state = {};
    this.danmaku = new Danmaku($("#danmaku"));
    this.chat = new ChatList($("#chat"), this.isHost ? 200 : 50);
    this.onUser = opts.onUser || null;
    // What the empty stage says: {key, action?: {key, run}} (the host's page tells what to do).
    this.stageHint = opts.stageHint || viewerStageHint;
    this.videos = null;
    this.muted = false;
    this._bind();
    onLangChange(() => this.renderLanguage());
  }

  /** After a language switch: the overlays render again in the new language. */
  renderLanguage() {
    if (!this.state.packets) return; // not joined yet
    this.renderAll();
    for (const id of this.state.packets.keys()) this.renderPacket(id);
    for (const id of this.state.coupons.keys()) this.renderCoupon(id);
  }

  // ---- state -----------------------------------------------------------------------------

  apply(snapshot) {
    const r = snapshot.room;
    this.state = {
      title: r.title,
      mode: r.mode,
      roomState: r.state,
      host: r.host,
      online: r.online,
      likes: r.likes,
      pinned: r.pinned,
      sale: r.sale,
      lottery: r.lottery,
      pk: r.pk,
      cohosts: r.cohosts || [],
      publishers: r.publishers || [],
      gifts: r.gifts || [],
      slow: r.slow_s || 0,
      announcement: r.announcement || null,
      poll: r.poll || null,
      coupons: new Map(),
      packets: new Map(),
    };
    this.chat.earlier(r.recent, this.onUser);
    this.renderAll();
  }

  renderAll() {
    this.renderHeader();
    this.renderProduct();
    this.renderLottery();
    this.renderPoll();
    this.renderAnnouncement();
    this.renderPk();
    this.renderPlaceholder();
  }

  /** Follow the room's publishers into the video grid (the SDK keeps the <video>s in sync). */
  followVideos(exclude = []) {
    this.videos = this.client.followPublishers(this.room, $("#videos"), {
      exclude,
      muted: this.muted !== false,
      makeTile: (entry) => this._tile(entry),
      onChange: (entries) => {
        this.state.publishers = entries;
        this.renderPlaceholder();
      },
    });
    return this.videos;
  }

  _tile(entry) {
    const label =
      entry.role === "host"
        ? entry.user
        : entry.role === "pk"
          ? t("stage.tile.pk", { user: entry.user })
          : entry.role === "cohost"
            ? t("stage.tile.cohost", { user: entry.user })
            : entry.user;
    return h("div.tile", {}, h("video", { playsInline: true, autoplay: true }), h("span.tile-label", {}, label));
  }

  // ---- events ----------------------------------------------------------------------------

  _bind() {
    // This room's events only (a PK opponent's room may share the connection).
    const c = this.client.room(this.room);
    c.on("resync", (d) => {
      this.apply(d.snapshot);
      this.chat.system(t("chat.reloaded"));
    });
    c.on("online", (d) => this._set("online", d.count));
    c.on(
      "likes",
      (d) => {
        const before = this.state.likes || 0;
        this._set("likes", Math.max(before, d.total));
        const others = Math.min(6, Math.max(0, d.delta - (this._myLikes || 0)));
        this._myLikes = 0;
        if (others) flyHearts($("#hearts"), others);
      },
    );
    c.on(
      "barrage",
      (d) => {
        const fromMe = d.user.id === this.me.id;
        this.danmaku.add(d.text, { mine: fromMe, tier: d.user.tier });
        this.chat.barrage(d, this.onUser);
      },
    );
    c.on("gift", (d) => this._gift(d));
    c.on("assistant.answer", (d) => this.chat.system(answerLine(d))); // the room assistant
    c.on("member.joined", (d) => this.chat.system(t("chat.joined", { name: d.user.name })));
    c.on(
      "room.started",
      (d) => {
        Object.assign(this.state, { roomState: "live", title: d.title, host: d.host });
        $("#ended").classList.add("hidden");
        this.renderHeader();
        this.renderPlaceholder();
        this.chat.system(t("chat.started"));
      },
    );
    c.on(
      "room.ended",
      (d) => {
        Object.assign(this.state, { roomState: "ended", pinned: null });
        this.renderHeader();
        this.renderProduct();
        this.renderPlaceholder();
        this._ended(d.summary || {});
      },
    );
    c.on(
      "room.updated",
      (d) => {
        if ("slow_s" in d) {
          this.state.slow = d.slow_s;
          this.chat.system(d.slow_s ? t("chat.slow_on", { n: d.slow_s }) : t("chat.slow_off"));
          this.renderHeader();
        }
        if ("title" in d) {
          this.state.title = d.title;
          this.renderHeader();
        }
      },
    );
    c.on(
      "product.pinned",
      (d) => {
        this.state.pinned = d.product;
        this.renderProduct();
      },
    );
    c.on(
      "product.unpinned",
      () => {
        this.state.pinned = null;
        this.renderProduct();
      },
    );
    c.on(
      "user.muted",
      (d) => {
        if (d.user === this.me.id) {
          toast(t("stage.muted_by_host"), "warn");
          this._mutedSelf(true);
        } else if (this.isHost) this.chat.system(t("chat.user_muted", { user: d.user }));
      },
    );
    c.on(
      "user.unmuted",
      (d) => {
        if (d.user === this.me.id) {
          toast(t("stage.unmuted"), "ok");
          this._mutedSelf(false);
        } else if (this.isHost) this.chat.system(t("chat.user_unmuted", { user: d.user }));
      },
    );
    c.on(
      "kicked",
      () => {
        document.body.classList.add("kicked");
        this._overlay(t("stage.kicked.title"), t("stage.kicked.text"));
      },
    );

    // flash sale
    c.on(
      "sale.opened",
      (d) => {
        this.state.sale = { ...d, left: d.left ?? d.stock };
        this.renderProduct();
        this.chat.system(t("chat.sale_opened", { title: d.product?.title ?? "", price: money(d.price_cents) }));
      },
    );
    c.on(
      "sale.stock",
      (d) => {
        const s = this.state.sale;
        if (s && s.id === d.id && (s.left == null || d.left <= s.left)) {
          s.left = d.left;
          this.renderSaleStock();
        }
      },
    );
    c.on(
      "sale.closed",
      (d) => {
        const s = this.state.sale;
        if (s && s.id === d.id) {
          Object.assign(s, { state: "closed", reason: d.reason, sold: d.sold });
          if (d.reason === "sold_out") s.left = 0;
          this.renderProduct();
        }
        this.chat.system(t(d.reason === "sold_out" ? "chat.sale_sold_out" : "chat.sale_ended", { n: d.sold }));
      },
    );

    // lottery
    c.on(
      "lottery.opened",
      (d) => {
        this.state.lottery = { ...d, state: "open" };
        this.renderLottery();
        this.chat.system(t("chat.lottery_opened", { prize: d.prize }));
      },
    );
    c.on(
      "lottery.drawn",
      (d) => {
        this.state.lottery = { ...(this.state.lottery || {}), ...d, state: "drawn" };
        this.renderLottery();
        const won = (d.winners || []).includes(this.me.id);
        if (won) toast(t("stage.you_won_prize", { prize: this.state.lottery.prize }), "ok", 8000);
        this.chat.system(t("chat.lottery_drawn", { n: (d.winners || []).length, entrants: d.entrants }));
      },
    );
    c.on(
      "lottery.closed",
      (d) => {
        if (this.state.lottery && this.state.lottery.id === d.id) {
          Object.assign(this.state.lottery, d, { state: d.state || "closed" });
          this.renderLottery();
        }
      },
    );
    c.on(
      "lottery.entries",
      (d) => {
        if (this.state.lottery && this.state.lottery.id === d.id) {
          this.state.lottery.entrants = d.count ?? d.entrants;
          this.renderLottery();
        }
      },
    );

    // red packets and coupons
    c.on(
      "redpacket.sent",
      (d) => {
        this.state.packets.set(d.id, { ...d, grabbed: null, finished: false });
        this.renderPacket(d.id);
        this.chat.system(t("chat.packet_sent", { amount: money(d.total_cents), n: d.count }));
      },
    );
    c.on(
      "redpacket.finished",
      (d) => {
        const p = this.state.packets.get(d.id) || { id: d.id };
        p.finished = true;
        p.best = d.best;
        this.state.packets.set(d.id, p);
        this.renderPacket(d.id);
      },
    );
    c.on(
      "coupon.issued",
      (d) => {
        this.state.coupons.set(d.id, { ...d, claimed: false });
        this.renderCoupon(d.id);
        this.chat.system(t("chat.coupon_issued", { amount: money(d.discount_cents) }));
      },
    );

    // polls and announcements
    c.on(
      "poll.opened",
      (d) => {
        this.state.poll = { ...d, counts: d.counts || d.options.map(() => 0), state: "open", voted: null };
        this.renderPoll();
      },
    );
    c.on(
      "poll.results",
      (d) => {
        if (this.state.poll && this.state.poll.id === d.id) {
          this.state.poll.counts = d.counts;
          this.renderPoll();
        }
      },
    );
    c.on(
      "poll.closed",
      (d) => {
        if (this.state.poll && this.state.poll.id === d.id) {
          Object.assign(this.state.poll, { counts: d.counts, state: "closed" });
          this.renderPoll();
        }
      },
    );
    c.on(
      "room.announcement",
      (d) => {
        this.state.announcement = d.text ? d : null;
        this.renderAnnouncement();
      },
    );

    // co-hosts and PK
    c.on(
      "cohost.updated",
      (d) => {
        const before = new Set(this.state.cohosts.map(userId));
        this.state.cohosts = d.cohosts || [];
        const now = new Set(this.state.cohosts.map(userId));
        for (const u of now) if (!before.has(u)) this.chat.system(t("chat.joined_stage", { user: u }));
        for (const u of before) if (!now.has(u)) this.chat.system(t("chat.left_stage", { user: u }));
        if (this.actions.cohostsChanged) this.actions.cohostsChanged(this.state.cohosts.map(userId));
      },
    );
    c.on(
      "pk.started",
      (d) => {
        this.state.pk = { ...d, scores: Object.fromEntries(d.rooms.map((r) => [r, 0])) }; // pk.started carries no scores
        this.renderPk();
        this.chat.system(t("chat.pk_started"));
      },
    );
    c.on(
      "pk.score",
      (d) => {
        if (this.state.pk && this.state.pk.id === d.id) {
          this.state.pk.scores = d.scores;
          this.renderPk();
        }
      },
    );
    c.on(
      "pk.ended",
      (d) => {
        if (this.state.pk) Object.assign(this.state.pk, { scores: d.scores, winner: d.winner, ended: true });
        this.renderPk();
        const text = d.winner == null ? t("chat.pk_draw") : d.winner === this.room ? t("chat.pk_we_won") : t("chat.pk_won_by", { room: d.winner });
        this.chat.system(text);
        toast(text, "ok", 5000);
        setTimeout(() => {
          if (this.state.pk && this.state.pk.id === d.id) {
            this.state.pk = null;
            this.renderPk();
          }
        }, 8000);
      },
    );
  }

  _set(key, value) {
    this.state[key] = value;
    const el = $(`#${key}`);
    if (el) el.textContent = compact(value);
  }

  /** Count my own likes so the next `likes` event does not fly my hearts twice. */
  liked(n) {
    this._myLikes = (this._myLikes || 0) + n;
    this.state.likes = (this.state.likes || 0) + n;
    $("#likes").textContent = compact(this.state.likes);
  }

  _gift(d) {
    this.chat.gift(d);
    if (this.actions.giftFeed) this.actions.giftFeed(d);
    const lane = $("#gift-lane");
    const banner = h(
      `div.gift-banner${d.value >= 500 ? ".big" : ""}`,
      {},
      h("div.avatar.small", {}, initials(d.user.name)),
      h("div", {}, h("b", {}, d.user.name), h("small", {}, t("stage.gift_sent", { gift: giftName(d.gift) }))),
      giftIcon(d.gift.id, "gift-big"),
      h("span.gift-count", {}, `×${d.count}`),
    );
    lane.append(banner);
    while (lane.childElementCount > 3) lane.firstElementChild.remove();
    setTimeout(() => banner.remove(), 4000);
  }

  _mutedSelf(muted) {
    this.selfMuted = muted;
    const input = $("#say");
    if (!input) return;
    const key = muted ? "chat.you_are_muted" : this.state.slow ? "chat.slow_placeholder" : "chat.say";
    input.dataset.i18nPlaceholder = key; // the same key again after a language switch
    input.placeholder = t(key, { n: this.state.slow });
  }

  _overlay(title, text) {
    const el = $("#ended");
    el.replaceChildren(h("div.ended-card", {}, h("h2", {}, title), h("p", {}, text), h("a.btn", { href: "/" }, t("stage.leave"))));
    el.classList.remove("hidden");
  }

  _ended(summary) {
    if (this.isHost) {
      toast(t("chat.show_ended"), "info");
      return;
    }
    const el = $("#ended");
    const rows = [
      [t("stage.ended.duration"), t("stage.ended.minutes", { n: Math.round((summary.duration_s || 0) / 60) })],
      [t("stage.ended.online"), summary.online ?? "–"],
      [t("stage.ended.likes"), compact(summary.likes || 0)],
    ];
    el.replaceChildren(
      h(
        "div.ended-card",
        {},
        h("h2", {}, t("stage.ended.title")),
        h("p", {}, t("stage.ended.thanks")),
        h("dl", {}, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
        h("button.btn", { onclick: () => el.classList.add("hidden") }, t("common.close")),
      ),
    );
    el.classList.remove("hidden");
  }

  // ---- render ----------------------------------------------------------------------------

  renderHeader() {
    const s = this.state;
    // Before the first show the room has no host: the host sees their own name.
    const host = s.host || (this.isHost ? this.me.name : null);
    if (host) {
      delete $("#host-name").dataset.i18n;
      $("#host-name").textContent = host;
    } else setText($("#host-name"), "stage.no_host");
    $("#host-avatar").textContent = initials(host || "?");
    $("#room-title").textContent = s.title || this.room;
    $("#live-badge").classList.toggle("hidden", s.roomState !== "live");
    $("#online").textContent = compact(s.online || 0);
    $("#likes").textContent = compact(s.likes || 0);
    this._mutedSelf(!!this.selfMuted);
  }

  renderPlaceholder() {
    const s = this.state;
    const ph = $("#placeholder");
    if (!ph) return;
    const hasVideo = $("#videos").childElementCount > 0;
    ph.classList.toggle("hidden", hasVideo);
    $("#ph-avatar").textContent = initials(s.host || (this.isHost ? this.me.name : "?"));
    const hint = this.stageHint(s);
    setText($("#ph-text"), hint.key);
    const btn = $("#ph-action");
    if (btn) {
      btn.classList.toggle("hidden", !hint.action);
      btn.textContent = hint.action ? t(hint.action.key) : "";
      btn.onclick = hint.action ? hint.action.run : null;
    }
  }

  /** Pinned product, or the flash sale's product with countdown and stock. */
  renderProduct() {
    const el = $("#product");
    const { pinned, sale } = this.state;
    const saleOn = sale && sale.state !== "closed" ? sale : sale && sale.state === "closed" && sale.reason === "sold_out" ? sale : null;
    const product = saleOn ? saleOn.product : pinned;
    if (!product) {
      el.classList.add("hidden");
      el.replaceChildren();
      return;
    }
    el.classList.remove("hidden");
    el.classList.toggle("sale", !!saleOn);
    const img = product.image
      ? h("img.thumb", { src: product.image, alt: "" })
      : h("div.thumb.ph", {}, (product.title || "?").slice(0, 1).toUpperCase());
    const priceRow = saleOn
      ? h("div.price", {}, h("b", {}, money(saleOn.price_cents)), product.price_cents > saleOn.price_cents ? h("s", {}, money(product.price_cents)) : null)
      : h("div.price", {}, h("b", {}, money(product.price_cents)));
    const body = h("div.pc-body", {}, saleOn ? this._saleHead(saleOn) : h("span.tag", {}, t("product.pinned")), h("div.title", {}, product.title), priceRow);
    if (saleOn) body.append(this._stockBar(saleOn));
    const btn = this._buyButton(product, saleOn);
    el.replaceChildren(...[img, body, btn].filter(Boolean));
    el.onclick = (e) => {
      if (e.target === btn || this.isHost) return;
      this.client.track(this.room, "product.click", product.id).catch(() => {});
    };
  }

  _saleHead(sale) {
    const now = Date.now();
    const head = h("div.sale-head", {}, h("span.tag.flash", {}, icon("zap"), t("product.flash_sale")));
    if (sale.state === "closed") return head;
    if (sale.starts_at && sale.starts_at > now) head.append(h("span.clock", {}, t("product.starts_in"), " ", h("b", { dataset: { until: sale.starts_at } })));
    else if (sale.ends_at) head.append(h("span.clock", {}, t("product.ends_in"), " ", h("b", { dataset: { until: sale.ends_at } })));
    return head;
  }

  _stockBar(sale) {
    const left = sale.left ?? sale.stock;
    const pct = sale.stock ? Math.round((100 * left) / sale.stock) : 0;
    return h(
      "div.stock",
      {},
      h("div.stock-track", {}, h("div.stock-fill", { style: `width:${pct}%` })),
      h("span.stock-text", {}, left > 0 ? t("product.left", { n: left }) : t("product.sold_out")),
    );
  }

  renderSaleStock() {
    const el = $("#product .stock");
    if (el && this.state.sale) el.replaceWith(this._stockBar(this.state.sale));
    const left = this.state.sale && this.state.sale.left;
    if (left === 0) this.renderProduct();
  }

  _buyButton(product, sale) {
    if (this.isHost) {
      if (!sale) return null;
      return h("span.host-note", {}, sale.state === "closed" ? t("product.sold", { n: sale.sold ?? sale.stock - (sale.left ?? 0) }) : t("product.on_sale"));
    }
    const soldOut = sale && (sale.left === 0 || sale.reason === "sold_out");
    const notYet = sale && sale.starts_at && sale.starts_at > Date.now();
    if (notYet && !soldOut) {
      // Enable the button when the sale opens (the card re-renders then).
      clearTimeout(this._opensTimer);
      this._opensTimer = setTimeout(() => this.renderProduct(), sale.starts_at - Date.now() + 50);
    }
    const label = t(soldOut ? "product.sold_out" : notYet ? "product.soon" : "product.buy");
    const btn = h("button.buy", { id: "buy-btn", disabled: !!(soldOut || notYet) }, label);
    btn.onclick = async (e) => {
      e.stopPropagation();
      if (this.actions.buy) await this.actions.buy(product, sale, btn);
    };
    return btn;
  }

  _widget(key, cls) {
    let el = document.getElementById(key);
    if (!el) {
      el = h(`div.widget.${cls}`, { id: key });
      $("#widgets").append(el);
    }
    return el;
  }

  _dropWidget(key) {
    const el = document.getElementById(key);
    if (el) el.remove();
  }

  renderLottery() {
    const l = this.state.lottery;
    if (!l) return this._dropWidget("w-lottery");
    const el = this._widget("w-lottery", "lottery");
    const drawn = l.state === "drawn";
    const head = h("div.w-head", {}, icon("gift", "w-ico"), h("b", {}, t("lottery.title")), drawn ? h("span.tag", {}, t("lottery.drawn")) : l.closes_at ? h("span.clock", { dataset: { until: l.closes_at } }) : null);
    const parts = [head, h("div.w-title", {}, l.prize)];
    if (!drawn) {
      const n = l.max_winners ?? l.winners;
      parts.push(h("div.w-sub", {}, t("lottery.winners", { n }), l.entrants != null ? ` · ${t("lottery.entered_count", { n: l.entrants })}` : ""));
      if (l.keyword) parts.push(h("div.w-sub", {}, t("lottery.keyword_before"), h("b", {}, l.keyword), t("lottery.keyword_after")));
      if (l.min_tier) parts.push(h("div.w-sub", {}, t("lottery.min_tier", { n: l.min_tier })));
      if (l.min_watch_s) parts.push(h("div.w-sub", {}, t("lottery.min_watch", { n: l.min_watch_s })));
      if (this.isHost) {
        parts.push(h("button.w-btn", { onclick: () => this.actions.draw && this.actions.draw(l) }, t("lottery.draw_now")));
      } else if (l.entered) {
        parts.push(h("button.w-btn.done", { disabled: true }, t("lottery.entered")));
      } else {
        parts.push(h("button.w-btn", { id: "lottery-enter", onclick: () => this.actions.enterLottery && this.actions.enterLottery(l) }, t("lottery.enter")));
      }
    } else {
      const winners = l.winners || [];
      const won = winners.includes(this.me.id);
      parts.push(h("div.w-sub", {}, t("lottery.winners_of", { n: winners.length, entrants: l.entrants ?? 0 })));
      parts.push(
        h(
          "ul.winners",
          { id: "lottery-winners" },
          winners.length ? winners.map((w) => h(`li${w === this.me.id ? ".me" : ""}`, {}, w === this.me.id ? t("lottery.you", { user: w }) : w)) : h("li.none", {}, t("lottery.no_entrants")),
        ),
      );
      if (won) parts.push(h("div.won", {}, icon("trophy"), " ", t("lottery.you_won")));
      parts.push(h("button.w-link", { id: "lottery-verify", onclick: () => this.verify(l) }, t("lottery.verify")));
    }
    el.replaceChildren(...parts);
  }

  async verify(l) {
    const rec = await attempt(() => this.client.lotteryRecord(this.room, l.id));
    if (!rec) return;
    const result = await verifyLottery(rec);
    const raw = `/v1/rooms/${encodeURIComponent(this.room)}/lotteries/${encodeURIComponent(l.id)}`;
    this.modal(
      h(
        "div.modal-card",
        {},
        h("h3", {}, t(result.ok ? "lottery.verify.ok" : "lottery.verify.bad")),
        h("p.muted", {}, t("lottery.verify.how")),
        h("ul.checks", {}, result.checks.map((c) => h(`li.${c.ok ? "ok" : "bad"}`, {}, h("b", {}, c.ok ? "✓ " : "✗ "), t(`lottery.check.${c.key}`), h("small", {}, c.detail)))),
        h("div.row", {}, h("button.btn.ghost", { onclick: () => openAuthorised(raw, this.client.token) }, t("lottery.verify.raw")), h("button.btn", { onclick: () => this.modal(null) }, t("common.close"))),
      ),
    );
  }

  modal(content) {
    const m = $("#modal");
    if (!content) {
      m.classList.add("hidden");
      m.replaceChildren();
      return;
    }
    m.replaceChildren(content);
    m.classList.remove("hidden");
  }

  renderPacket(id) {
    const p = this.state.packets.get(id);
    const key = `w-packet-${id}`;
    if (!p) return this._dropWidget(key);
    const el = this._widget(key, "packet");
    const parts = [h("div.w-head", {}, icon("packet", "w-ico"), h("b", {}, t("packet.title")))];
    if (p.message) parts.push(h("div.w-title", {}, p.message));
    if (p.total_cents != null) parts.push(h("div.w-sub", {}, t("packet.summary", { amount: money(p.total_cents), n: p.count })));
    if (p.grabbed != null) parts.push(h("div.won", {}, t("packet.you_got", { amount: money(p.grabbed) })));
    if (p.finished) parts.push(h("div.w-sub", {}, t("packet.all_grabbed"), p.best ? ` · ${t("packet.best", { user: userId(p.best) ?? "", amount: p.best.amount_cents ? money(p.best.amount_cents) : "" })}` : ""));
    if (!this.isHost && p.grabbed == null && !p.finished && !p.missed)
      parts.push(h("button.w-btn.red", { onclick: () => this.actions.grab && this.actions.grab(p) }, t("packet.open")));
    if (p.missed) parts.push(h("div.w-sub", {}, p.missed));
    el.replaceChildren(...parts);
    if (p.finished || p.grabbed != null || p.missed) setTimeout(() => this._dropWidget(key), 15000);
  }

  renderCoupon(id) {
    const cp = this.state.coupons.get(id);
    const key = `w-coupon-${id}`;
    if (!cp) return this._dropWidget(key);
    const el = this._widget(key, "coupon");
    const parts = [
      h("div.w-head", {}, icon("ticket", "w-ico"), h("b", {}, cp.title || t("coupon.title"))),
      h("div.w-title", {}, t("coupon.off", { amount: money(cp.discount_cents) })),
      h("div.w-sub", {}, cp.min_spend_cents ? t("coupon.min_spend", { amount: money(cp.min_spend_cents) }) : t("coupon.no_min")),
    ];
    if (!this.isHost) {
      if (cp.claimed) parts.push(h("button.w-btn.done", { disabled: true }, t("coupon.claimed")));
      else if (cp.gone) parts.push(h("button.w-btn.done", { disabled: true }, t(cp.gone)));
      else parts.push(h("button.w-btn", { onclick: () => this.actions.claim && this.actions.claim(cp) }, t("coupon.claim")));
    } else if (cp.quantity) parts.push(h("div.w-sub", {}, t("coupon.quantity", { n: cp.quantity, per: cp.per_user })));
    el.replaceChildren(...parts);
  }

  renderPoll() {
    const p = this.state.poll;
    if (!p) return this._dropWidget("w-poll");
    const el = this._widget("w-poll", "poll");
    const counts = p.counts || p.options.map(() => 0);
    const total = counts.reduce((a, b) => a + b, 0);
    const showResults = this.isHost || p.voted != null || p.state === "closed";
    const open = p.state !== "closed";
    const head = h("div.w-head", {}, icon("poll", "w-ico"), h("b", {}, t("poll.title")), open && p.closes_at ? h("span.clock", { dataset: { until: p.closes_at } }) : h("span.tag", {}, t("poll.closed")));
    const opts = p.options.map((label, i) => {
      const pct = total ? Math.round((100 * counts[i]) / total) : 0;
      if (!showResults) {
        return h("button.poll-opt", { onclick: () => this.actions.vote && this.actions.vote(p, i) }, label);
      }
      return h(
        `div.poll-res${p.voted === i ? ".mine" : ""}`,
        {},
        h("div.poll-fill", { style: `width:${pct}%` }),
        h("span", {}, label),
        h("b", {}, `${pct}%`),
      );
    });
    const footer = showResults ? h("div.w-sub", {}, t("poll.votes", { n: total })) : null;
    el.replaceChildren(...[head, h("div.w-title", {}, p.question), ...opts, footer].filter(Boolean));
  }

  renderAnnouncement() {
    const a = this.state.announcement;
    const el = $("#announce");
    el.classList.toggle("hidden", !a);
    if (!a) return;
    $("#announce-text").textContent = a.text;
    const clock = $("#announce-clock");
    if (a.countdown_to && a.countdown_to > Date.now()) {
      clock.dataset.until = a.countdown_to;
      clock.classList.remove("hidden");
    } else {
      delete clock.dataset.until;
      clock.classList.add("hidden");
    }
  }

  renderPk() {
    const pk = this.state.pk;
    const bar = $("#pkbar");
    $("#stage").classList.toggle("in-pk", !!pk);
    if (!pk) {
      bar.classList.add("hidden");
      return;
    }
    bar.classList.remove("hidden");
    const other = (pk.rooms || []).find((r) => r !== this.room) || t("pk.opponent");
    const scores = pk.scores || {};
    const ours = scores[this.room] || 0;
    const theirs = scores[other] || 0;
    const hosts = pk.hosts || {};
    $("#pk-ours-name").textContent = hosts[this.room] || this.state.host || this.room;
    $("#pk-theirs-name").textContent = hosts[other] || other;
    $("#pk-ours").textContent = compact(ours);
    $("#pk-theirs").textContent = compact(theirs);
    const pct = ours + theirs ? (100 * ours) / (ours + theirs) : 50;
    $("#pk-fill").style.width = `${pct}%`;
    const timer = $("#pk-timer");
    if (pk.ended) {
      delete timer.dataset.until;
      timer.textContent = t(pk.winner == null ? "pk.draw" : pk.winner === this.room ? "pk.win" : "pk.lost");
    } else if (pk.ends_at) timer.dataset.until = pk.ends_at;
  }
}

function viewerStageHint(s) {
  if (s.roomState === "live") return { key: "viewer.hint.live" };
  if (s.roomState === "ended") return { key: "stage.ended.title" };
  return { key: "viewer.hint.not_started" };
}

export function initials(name) {
  const parts = String(name || "?").split(/[\s_.@-]+/).filter(Boolean);
  return (parts.length > 1 ? parts[0][0] + parts[1][0] : String(name || "?").slice(0, 2)).toUpperCase();
}
