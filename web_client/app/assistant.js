// The room assistant in the host studio (issue 18): 观众在问, the last minute's questions
// clustered (assistant.questions, at most once a second), with one-click answers and the
// room's on/off switch. Wire format: docs/protocol.md A.14.
import { $, attempt, h } from "/app/common.js";

const LABELS = {
  title: "观众在问 · Audience questions",
  empty: "No questions in the last minute · 最近一分钟没有提问",
  answered: "answered · 已答",
  open: "unanswered · 未答",
  reply: "Answer · 回复",
  placeholder: "Your answer, shown pinned to the room · 置顶回复",
  on: "Assistant on · 助手已开",
  off: "Assistant off · 助手已关",
};

export function mountAssistantBoard(client, room, parent) {
  const list = h("div.list.assistant-board", { id: "assistant-board" }, h("div.empty", {}, LABELS.empty));
  let enabled = true;
  const toggle = h("button.btn.ghost.small", { type: "button", id: "assistant-toggle" }, LABELS.on);
  toggle.addEventListener("click", async () => {
    const out = await attempt(() => client.request("assistant.set", room, { enabled: !enabled }));
    if (out) {
      enabled = out.assistant.enabled !== false;
      toggle.textContent = enabled ? LABELS.on : LABELS.off;
    }
  });
  const card = h("div.card", { id: "assistant-card" }, h("h3", {}, LABELS.title, " ", toggle), list);
  parent.prepend(card);
  client.on("assistant.questions", (d, meta) => {
    if (meta.room === room) render(list, d.clusters || [], client, room);
  });
  return card;
}

function render(list, clusters, client, room) {
  list.replaceChildren();
  if (!clusters.length) {
    list.append(h("div.empty", {}, LABELS.empty));
    return;
  }
  for (const c of clusters) {
    const input = h("input.grow", { maxlength: "300", placeholder: LABELS.placeholder });
    const send = h("button.btn.small", { type: "submit" }, LABELS.reply);
    const form = h("form.row", {}, input, send);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      const params = { text };
      if (c.key) params.key = c.key;
      if (await attempt(() => client.request("assistant.reply", room, params), "Answered · 已回复")) input.value = "";
    });
    const state = c.answered >= c.count ? LABELS.answered : `${c.count - c.answered} ${LABELS.open}`;
    list.append(
      h(
        "div.item.assistant-cluster",
        { dataset: { key: c.key || "" } },
        h("div.row", {}, h("b.grow", {}, c.text), h("span.badge", {}, `×${c.count}`), h("small.muted", {}, state)),
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
