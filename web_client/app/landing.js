// Dev landing page: mint dev tokens and open the host, viewer and call pages with them.
import { $, attempt, copy, devToken, h, t, toast } from "/app/common.js";

const rand = () => Math.random().toString(36).slice(2, 7);
const slug = (name) => (name || "").toLowerCase().replace(/[^a-z0-9_.:@-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40);

function pageUrl(page, room, token) {
  return `/${page}.html?room=${encodeURIComponent(room)}#token=${encodeURIComponent(token)}`;
}

async function open(page, room, role, name) {
  const user = `${slug(name) || role}-${rand()}`;
  const token = await devToken({ user, role, name: name || user });
  const url = pageUrl(page, room, token);
  const links = $("#live-links");
  if (page !== "call") {
    links.prepend(h("a", { href: url, target: "_blank" }, `${t(page === "host" ? "landing.link.host" : "landing.link.viewer")} · ${user} ↗`));
    while (links.childElementCount > 4) links.lastElementChild.remove();
  }
  window.open(url, "_blank");
}

async function ensureCallRoom(room) {
  const admin = await devToken({ user: "dev-admin", role: "admin" });
  const res = await fetch("/v1/rooms", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${admin}` },
    body: JSON.stringify({ id: room, title: `Call ${room}`, mode: "call" }),
  });
  if (res.status === 409) return; // exists already (its mode was fixed at creation)
  if (!res.ok) throw new Error(t("landing.call_room_failed", { status: res.status }));
}

async function main() {
  try {
    await devToken({ user: "probe", role: "viewer" });
    $("#dev-badge").classList.remove("hidden");
  } catch {
    $("#not-dev").classList.remove("hidden");
    for (const b of document.querySelectorAll("button")) b.disabled = true;
  }
  const room = () => $("#live-room").value.trim() || "demo";
  $("#open-host").addEventListener("click", () => attempt(() => open("host", room(), "host", $("#live-name").value.trim())));
  $("#open-viewer").addEventListener("click", () => attempt(() => open("viewer", room(), "viewer", $("#live-name").value.trim())));
  $("#open-call").addEventListener("click", () =>
    attempt(async () => {
      const r = $("#call-room").value.trim() || "call-1";
      await ensureCallRoom(r);
      await open("call", r, "viewer", $("#call-name").value.trim());
    }),
  );
  $("#tok-btn").addEventListener("click", () =>
    attempt(async () => {
      const body = { user: $("#tok-user").value.trim(), role: $("#tok-role").value };
      if ($("#tok-room").value.trim()) body.room = $("#tok-room").value.trim();
      const token = await devToken(body);
      $("#tok-out").textContent = token;
      $("#tok-out").classList.remove("hidden");
      $("#tok-copy").classList.remove("hidden");
      $("#tok-copy").onclick = () => copy(token);
      toast(t("landing.token_minted"), "ok", 1500);
    }),
  );
  $("#snippet").textContent = `<script type="module">
  import { RoomClient } from "${location.origin}/sdk/roomserver.js";
  const client = new RoomClient({ url: "${location.origin}", token });
  await client.connect();
  await client.join("demo");
  client.on("barrage", (m) => console.log(m.user.name, m.text));
  await client.sendBarrage("demo", "hello");
</script>`;
  document.body.dataset.ready = "1";
}

main();
