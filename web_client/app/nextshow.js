// The viewer page's growth widgets (issue 12): the room's next scheduled show with a live
// countdown and a follow button (`track follow`: the app reminds followers before the show,
// `room.reminder` webhooks), and the share button (a signed link naming this viewer, copied
// to the clipboard; whoever opens it joins with its `ref` and is attributed to them).
import { $, attempt, countdown, h, icon, setText, t, toast } from "/app/common.js";
import { dateTime, onLangChange } from "/app/i18n.js";

/** Remembered per room and user: the server keeps follows, this page only shows the state. */
const followKey = (room, user) => `roomserver.follow:${room}:${user}`;

export class NextShow {
  /**
   * @param {import("/sdk/roomserver.js").RoomClient} client
   * @param {string} room
   * @param {{id: string}} me
   */
  constructor(client, room, me) {
    this.client = client;
    this.room = room;
    this.me = me;
    this.at = null;
    this.live = false;
    this.following = localStorage.getItem(followKey(room, me.id)) === "1";
    const r = client.room(room);
    r.on("room.started", () => {
      this.live = true;
      this.render();
    });
    r.on("room.ended", () => {
      this.live = false;
      this.at = null; // the next show is not known until the page joins again
      this.render();
    });
    onLangChange(() => this.render());
  }

  /** From the join snapshot. */
  apply(snapshot) {
    const r = snapshot.room;
    this.live = r.state === "live";
    this.at = r.scheduled_at ?? null;
    this.render();
  }

  render() {
    const card = $("#next-show");
    const upcoming = !this.live && this.at != null && this.at > Date.now();
    card.classList.toggle("hidden", !upcoming);
    if (!upcoming) {
      card.replaceChildren();
      return;
    }
    const title = h("b.next-title");
    setText(title, "viewer.next.title");
    const when = h("span.next-when");
    setText(when, "viewer.next.starts", { when: dateTime(this.at) });
    const label = h("small.next-in");
    setText(label, "viewer.next.in");
    // The page's clock (startClock) ticks every [data-until]; the first text is set here.
    const clock = h("span.next-clock", { dataset: { until: String(this.at) } }, countdown(this.at));
    const follow = h(
      `button.btn.follow-btn${this.following ? ".following" : ""}`,
      { id: "follow-btn", "aria-pressed": String(this.following), onclick: () => this.toggle() },
      icon(this.following ? "check" : "user-plus"),
      h("span", {}, t(this.following ? "viewer.following" : "viewer.follow")),
    );
    card.replaceChildren(title, when, h("div.next-count", {}, label, clock), follow);
  }

  /** Follow, or (pressed again on "Following") unfollow: the server keeps which. */
  async toggle() {
    const next = !this.following;
    const done = await attempt(
      () => this.client.track(this.room, next ? "follow" : "unfollow"),
      t(next ? "viewer.followed" : "viewer.unfollowed"),
    );
    if (!done) return;
    this.following = next;
    if (next) localStorage.setItem(followKey(this.room, this.me.id), "1");
    else localStorage.removeItem(followKey(this.room, this.me.id));
    this.render();
  }
}

/** The share button: a signed link of the room naming this viewer, copied to the clipboard. */
export function bindShare(client, room) {
  const btn = $("#share-btn");
  btn.replaceChildren(icon("share"));
  btn.addEventListener("click", async () => {
    const link = await attempt(() => client.shareLink(room));
    if (!link) return;
    const url = new URL(link.url, location.origin).href;
    btn.dataset.shareUrl = url;
    try {
      await navigator.clipboard.writeText(url);
      toast(t("viewer.share.copied"), "ok", 2500);
    } catch {
      toast(url, "info", 10_000); // no clipboard (permission, insecure origin): show it to copy by hand
    }
  });
}

/** The `ref` a share link opened this page with, or null. */
export function shareRef() {
  return new URLSearchParams(location.search).get("ref");
}

/** Join with the page's share ref; an invalid one (forged, expired, another room) is said
 * once and the page joins without it, dropping it from the address. */
export async function joinWithRef(client, room) {
  const ref = shareRef();
  if (!ref) return client.join(room);
  try {
    return await client.join(room, { ref });
  } catch (err) {
    if (err.code !== "bad_request") throw err;
    const url = new URL(location.href);
    url.searchParams.delete("ref");
    history.replaceState(null, "", url);
    toast(t("viewer.share.bad_ref"), "warn", 5000);
    return client.join(room);
  }
}
