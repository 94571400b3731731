// The post-live report page (report.html?room=r1&show=2#token=JWT): it fetches the JSON of
// GET /v1/rooms/{room}/report and draws it, so the page and the JSON cannot disagree. Charts
// are Apache ECharts (web_client/vendor/echarts/, loaded by the page as window.echarts).
// Switching the language redraws everything from the same JSON.
import { $, devToken, fatal, h, pageParams } from "/app/shell.js";
import { lang, money, number, t } from "/app/i18n.js";

const q = new URLSearchParams(location.search);
const params = pageParams("admin");
const show = q.get("show");
const charts = [];

function apiPath(extra = {}) {
  const query = new URLSearchParams();
  if (show) query.set("show", show);
  for (const [k, v] of Object.entries(extra)) query.set(k, v);
  const qs = query.toString();
  return `/v1/rooms/${encodeURIComponent(params.room)}/report${qs ? `?${qs}` : ""}`;
}

async function token() {
  if (params.token) return params.token;
  // Dev mode only (`make serve`): the page mints its own admin token, as the other pages do.
  params.token = await devToken({ user: params.user || "report-admin", role: "admin" });
  return params.token;
}

async function get(path) {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${await token()}`, "Accept-Language": lang() } });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error((body.error && body.error.message) || `${res.status} ${res.statusText}`);
  }
  return res;
}

const pct = (x) => (x == null ? "–" : `${(x * 100).toFixed(1)}%`);
const secs = (s) => {
  const m = Math.floor(s / 60);
  const r = Math.round(s % 60);
  return m ? t("report.min_sec", { m, s: r }) : t("report.sec", { s: r });
};
const clock = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;

function kpi(label, value) {
  return h("div.kpi", {}, h("small", {}, label), h("b", {}, value));
}

function section(title, ...children) {
  return h("section", {}, h("h2", {}, title), ...children);
}

function table(head, rows, numeric = []) {
  return h(
    "div.table-wrap",
    {},
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, head.map((x, i) => h(numeric.includes(i) ? "th.num" : "th", {}, x)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((x, i) => h(numeric.includes(i) ? "td.num" : "td", {}, String(x)))))),
    ),
  );
}

function chart(el, option) {
  const c = window.echarts.init(el, "dark", { renderer: "canvas" });
  c.setOption({ backgroundColor: "transparent", textStyle: { fontSize: 11 }, ...option });
  charts.push(c);
  return c;
}

const MARK_KEYS = {
  pin: "report.mark.pin",
  unpin: "report.mark.unpin",
  sale: "report.mark.sale",
  lottery: "report.mark.lottery",
  poll: "report.mark.poll",
  redpacket: "report.mark.redpacket",
  coupon: "report.mark.coupon",
};

function curvesChart(el, r) {
  const minutes = r.curves.online.map((_, i) => i);
  const marks = r.marks
    .filter((m) => m.what !== "unpin")
    .map((m) => ({
      xAxis: Math.min(Math.floor(m.t / 60), r.curves.minutes - 1),
      name: `${t(MARK_KEYS[m.what] || "report.mark.other")}${m.product ? ` ${m.product}` : ""} ${clock(m.t)}`,
    }));
  chart(el, {
    tooltip: { trigger: "axis" },
    legend: { top: 0, type: "scroll" },
    grid: { left: 40, right: 40, top: 36, bottom: 62 },
    dataZoom: [{ type: "inside" }, { type: "slider", height: 14, bottom: 2 }],
    xAxis: { type: "category", data: minutes, name: t("report.minute"), nameLocation: "middle", nameGap: 24 },
    yAxis: [{ type: "value", minInterval: 1 }, { type: "value", splitLine: { show: false } }],
    series: [
      {
        name: t("report.curve.online"),
        type: "line",
        data: r.curves.online,
        smooth: true,
        showSymbol: false,
        areaStyle: { opacity: 0.15 },
        // Labelled while few enough to read; always named in the hover tooltip.
        markLine: {
          symbol: "none",
          label: { show: marks.length <= 12, position: "insideEndTop", formatter: "{b}", fontSize: 9 },
          tooltip: { formatter: (p) => p.name },
          lineStyle: { type: "dashed" },
          data: marks,
        },
      },
      { name: t("report.curve.barrage"), type: "bar", data: r.curves.barrage, yAxisIndex: 1 },
      { name: t("report.curve.likes"), type: "bar", data: r.curves.likes, yAxisIndex: 1 },
      { name: t("report.curve.orders"), type: "line", data: r.curves.orders, yAxisIndex: 1, showSymbol: false },
    ],
  });
}

function gmvChart(el, r) {
  chart(el, {
    tooltip: { trigger: "axis", valueFormatter: (v) => money(v) },
    grid: { left: 56, right: 12, top: 16, bottom: 28 },
    xAxis: { type: "category", data: r.curves.gmv.map((_, i) => i) },
    yAxis: { type: "value", axisLabel: { formatter: (v) => money(v) } },
    series: [{ name: t("report.curve.gmv"), type: "bar", data: r.curves.gmv, itemStyle: { color: "#ffc83d" } }],
  });
}

function funnelChart(el, r) {
  const names = {
    viewers: t("report.funnel.viewers"),
    clicked: t("report.funnel.clicked"),
    carted: t("report.funnel.carted"),
    ordered: t("report.funnel.ordered"),
  };
  chart(el, {
    tooltip: { trigger: "item", formatter: (p) => `${p.name}: ${number(p.value)}` },
    series: [
      {
        type: "funnel",
        left: "10%",
        width: "80%",
        sort: "none",
        label: { position: "inside", color: "#fff", textBorderColor: "#000", textBorderWidth: 2, formatter: (p) => `${p.name} ${number(p.value)}` },
        data: r.sales.funnel.map((f) => ({ name: names[f.step] || f.step, value: f.users })),
      },
    ],
  });
}

function productsChart(el, r) {
  const products = r.products.filter((p) => p.pins.length);
  chart(el, {
    tooltip: { trigger: "axis", valueFormatter: (v) => money(v) },
    legend: { top: 0 },
    grid: { left: 56, right: 12, top: 30, bottom: 28 },
    xAxis: { type: "category", data: products.map((p) => p.product) },
    yAxis: { type: "value", axisLabel: { formatter: (v) => money(v) } },
    series: [
      { name: t("report.during_pin"), type: "bar", data: products.map((p) => p.pins.reduce((a, w) => a + w.during.gmv, 0)) },
      { name: t("report.after_pin"), type: "bar", data: products.map((p) => p.pins.reduce((a, w) => a + w.after.gmv, 0)) },
    ],
  });
}

async function download(table) {
  const res = await get(apiPath({ format: "csv", table }));
  const url = URL.createObjectURL(await res.blob());
  const a = h("a", { href: url, download: `${table}-${params.room}-${show || "latest"}.csv` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function render(r) {
  for (const c of charts.splice(0)) c.dispose();
  const a = r.audience;
  const e = r.engagement;
  const s = r.sales;
  $("#show-line").textContent = t(r.ended_at ? "report.show_line" : "report.show_line_live", {
    title: r.title || r.room,
    room: r.room,
    show: r.show,
    duration: secs(r.duration_s),
  });
  const curves = h("div.chart");
  const gmv = h("div.chart.short");
  const funnel = h("div.chart.short");
  const products = h("div.chart.short");
  const main = $("#report");
  main.replaceChildren(
    section(
      t("report.audience"),
      h(
        "div.kpis",
        {},
        kpi(t("report.peak_concurrent"), `${number(a.peak_concurrent)} @ ${clock(a.peak_at_s)}`),
        kpi(t("report.avg_concurrent"), number(a.avg_concurrent)),
        kpi(t("report.unique_viewers"), number(a.unique_viewers)),
        kpi(t("report.views"), number(a.views)),
        kpi(t("report.avg_watch"), secs(a.avg_watch_s)),
        kpi(t("report.new_returning"), `${number(a.new_viewers)} / ${number(a.returning_viewers)}`),
        kpi(t("report.interaction_rate"), pct(e.interaction_rate)),
        kpi(t("report.barrage"), number(e.barrage)),
        kpi(t("report.likes"), number(e.likes)),
        kpi(t("report.gifts"), `${number(e.gifts)} · ${money(e.gift_value)}`),
        kpi(t("report.orders"), number(s.orders)),
        kpi(t("report.gmv"), money(s.gmv)),
        kpi(t("report.gpm"), money(s.gpm)),
        kpi(t("report.buyers"), number(s.buyers)),
      ),
    ),
    section(t("report.curves"), curves, gmv),
    section(t("report.funnel"), funnel),
    section(
      t("report.products"),
      r.products.some((p) => p.pins.length) ? products : null,
      table(
        [t("report.product"), t("report.pin_window"), t("report.clicks"), t("report.cart_adds"), t("report.orders"), t("report.gmv"), t("report.conversion")],
        r.products.flatMap((p) =>
          p.pins.length
            ? p.pins.flatMap((w) => [
                [p.product, `${clock(w.start_s)}–${clock(w.end_s)}`, w.during.clicks, w.during.cart_adds, w.during.orders, money(w.during.gmv), pct(w.during.conversion)],
                [p.product, t("report.after_window"), w.after.clicks, w.after.cart_adds, w.after.orders, money(w.after.gmv), pct(w.after.conversion)],
              ])
            : [[p.product, t("report.never_pinned"), p.total.clicks, p.total.cart_adds, p.total.orders, money(p.total.gmv), pct(p.total.conversion)]],
        ),
        [2, 3, 4, 5, 6],
      ),
    ),
    section(
      t("report.retention"),
      h(
        "div.kpis",
        {},
        kpi(t("report.previous_show"), r.retention.previous_show == null ? "–" : `#${r.retention.previous_show}`),
        kpi(t("report.returned"), `${number(r.retention.returned)} / ${number(r.retention.previous_viewers)} (${pct(r.retention.returned_rate)})`),
        kpi(t("report.returned_buyers"), `${number(r.retention.returned_buyers)} / ${number(r.retention.previous_buyers)}`),
        kpi(t("report.repeat_buyers"), number(r.retention.repeat_buyers)),
      ),
    ),
    section(
      t("report.top"),
      table([t("report.top_gifters"), t("report.value"), t("report.count")], r.top_gifters.map((x) => [x.user, money(x.value), x.count]), [1, 2]),
      table([t("report.top_buyers"), t("report.value"), t("report.count")], r.top_buyers.map((x) => [x.user, money(x.value), x.count]), [1, 2]),
    ),
    section(
      t("report.shares"),
      h("p.muted", {}, t("report.attributed", { n: r.attributed_viewers })),
      table(
        [t("report.sharer"), t("report.brought"), t("report.brought_new"), t("report.orders"), t("report.gmv"), t("report.share_actions")],
        r.shares.map((x) => [x.user, x.viewers, x.new_viewers, x.orders, money(x.gmv), x.shares]),
        [1, 2, 3, 4, 5],
      ),
    ),
    section(
      t("report.assistant"),
      h(
        "div.kpis",
        {},
        kpi(t("report.questions"), number(r.assistant.questions)),
        kpi(t("report.answered"), number(r.assistant.answered)),
        kpi(t("report.unanswered"), number(r.assistant.unanswered)),
      ),
      table(
        [t("report.top_unanswered"), t("report.questions")],
        (r.assistant.top_unanswered || []).map((x) => [x.example, x.questions]),
        [1],
      ),
    ),
    section(
      t("report.downloads"),
      h(
        "div.downloads",
        {},
        h("button", { type: "button", onclick: () => download("orders") }, t("report.csv_orders")),
        h("button", { type: "button", onclick: () => download("users") }, t("report.csv_users")),
      ),
    ),
  );
  main.setAttribute("aria-busy", "false");
  curvesChart(curves, r);
  gmvChart(gmv, r);
  funnelChart(funnel, r);
  if (r.products.some((p) => p.pins.length)) productsChart(products, r);
  window.app = { report: r, charts: charts.length };
  document.body.dataset.ready = "1";
}

async function start() {
  if (!window.echarts) throw new Error("echarts did not load (/vendor/echarts/echarts.min.js)");
  const report = await (await get(apiPath())).json();
  render(report);
  window.addEventListener("langchange", () => render(report));
  window.addEventListener("resize", () => charts.forEach((c) => c.resize()));
}

start().catch((err) => fatal(err));
