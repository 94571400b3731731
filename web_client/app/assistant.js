// The room assistant in the host studio (issue 18): 观众在问, the last minute's questions
// clustered (assistant.questions, at most once a second), with one-click answers and the
// room's on/off switch. Wire format: docs/protocol.md A.14.
import { $, attempt, h } from "/app/common.js";
import { onLangChange, setText, t } from "/app/i18n.js";

export function mountAssistantBoard(client, room, parent) {
  const list = h("div.list.assistant-board", { id: "assistant-board" });
  let enabled = true;
  let shown = [];
  const toggle = h("button.btn.ghost.small", { type: "button", id: "assistant-toggle" });
  setText(toggle, "host.assistant.on");
  toggle.addEventListener("click", async () => {
    const out = await attempt(() => client.request("assistant.set", room, { enabled: !enabled }));
    if (out) {
      enabled = out.assistant.enabled !== false;
      setText(toggle, enabled ? "host.assistant.on" : "host.assistant.off");
    }
  });
  const title = setText(h("span"), "host.assistant.title");
  const card = h("div.card", { id: "assistant-card" }, h("h3", {}, title, " ", toggle), list);
  parent.prepend(card);
  render(list, shown, client, room);
  client.on("assistant.questions", (d, meta) => {
    if (meta.room !== room) return;
    shown = d.clusters || [];
    render(list, shown, client, room);
  });
  // The clusters' states are rendered texts: redraw them in the new language (typed answers
  // are lost only if a cluster changes meanwhile, as on any update).
  onLangChange(() => render(list, shown, client, room));
  return card;
}

function render(list, clusters, client, room) {
  const typed = new Map([...list.querySelectorAll(".assistant-cluster")].map((el) => [el.dataset.key, el.querySelector("input").value]));
  list.replaceChildren();
  if (!clusters.length) {
    list.append(setText(h("div.empty"), "host.assistant.empty"));
    return;
  }
  for (const c of clusters) {
    const input = h("input.grow", { maxlength: "300", dataset: { i18nPlaceholder: "host.assistant.placeholder" } });
    input.placeholder = t("host.assistant.placeholder");
    input.value = typed.get(c.key || "") || "";
    const send = setText(h("button.btn.small", { type: "submit" }), "host.assistant.reply");
    const form = h("form.row", {}, input, send);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      const params = { text };
      if (c.key) params.key = c.key;
      if (await attempt(() => client.request("assistant.reply", room, params), t("host.assistant.replied"))) input.value = "";
    });
    const state = h("small.muted");
    if (c.answered >= c.count) setText(state, "host.assistant.answered");
    else setText(state, "host.assistant.open", { n: c.count - c.answered });
    list.append(
      h(
        "div.item.assistant-cluster",
        { dataset: { key: c.key || "" } },
        h("div.row", {}, h("b.grow", {}, c.text), h("span.badge", {}, `×${c.count}`), state),
        form,
      ),
    );
  }
}

// Viewers and hosts: the assistant's answers as lines in the chat.
export function answerLine(d) {
  const to = d.to ? `@${d.to.name || d.to.id} ` : "";
  const who = d.source === "host" ? "📌" : "🤖";
  return `${who} ${to}${d.text}`;
}

export function watchAnswers(client, room, chat) {
  client.on("assistant.answer", (d, meta) => {
    if (meta.room === room) chat.system(answerLine(d));
  });
}

export function boardEl() {
  return $("#assistant-board");
}
