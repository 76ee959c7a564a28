// Overview: every deployment with its health, split, live requests/s, latency and error rate; firing alerts,
// open incidents and the latest events. Refreshed by polling.
import { badge, fill, fmt, h, section, table, api } from "../app.js";
import { splitBar } from "../charts.js";

export async function render({ main }) {
  const cards = h("div", { class: "grid", id: "deployments" });
  const alerts = h("div");
  const incidents = h("div");
  const events = h("div");
  main.append(
    h("h1", {}, "Overview"),
    h("p", { class: "muted", id: "overview-note" }, "Live traffic over the last 5 minutes."),
    cards,
    h("div", { class: "grid two" }, section("Firing alerts", alerts), section("Open incidents", incidents)),
    section("Recent events", events),
  );

  return async () => {
    const o = await api("ui/overview", { params: { window_s: 300 } });
    fill(cards, o.deployments.length ? o.deployments.map(card) : h("p", { class: "muted" }, "No deployments yet: mlpilot deploy NAME MODEL"));
    fill(
      alerts,
      table(
        [
          { label: "deployment", get: (a) => h("a", { href: `#/deployments/${encodeURIComponent(a.deployment)}` }, a.deployment) },
          { label: "SLO", get: (a) => a.slo },
          { label: "severity", get: (a) => badge(a.severity) },
          { label: "fired", get: (a) => fmt.ago(a.fired_at) },
          { label: "summary", get: (a) => a.summary },
        ],
        o.alerts,
        { empty: "No alert is firing." },
      ),
    );
    fill(
      incidents,
      table(
        [
          { label: "#", get: (i) => h("a", { href: `#/incidents/${i.id}` }, `#${i.id}`) },
          { label: "deployment", get: (i) => i.deployment },
          { label: "status", get: (i) => badge(i.status) },
          { label: "severity", get: (i) => badge(i.severity) },
          { label: "opened", get: (i) => fmt.ago(i.opened_at) },
          { label: "title", get: (i) => i.title },
        ],
        o.incidents,
        { empty: "No open incident.", onRow: (i) => (location.hash = `#/incidents/${i.id}`) },
      ),
    );
    fill(
      events,
      table(
        [
          { label: "#", get: (e) => e.id, class: "num" },
          { label: "when", get: (e) => fmt.ago(e.ts) },
          { label: "action", get: (e) => e.action },
          { label: "subject", get: (e) => e.subject },
          { label: "actor", get: (e) => e.actor },
        ],
        o.events,
        { empty: "No events yet." },
      ),
    );
  };
}

function card(d) {
  const s = d.stats;
  const href = `#/deployments/${encodeURIComponent(d.name)}`;
  return h(
    "article",
    { class: "card deployment", "data-deployment": d.name },
    h("div", { class: "row" }, h("h2", {}, h("a", { href }, d.name)), badge(d.health), d.rollout && badge(`rollout ${d.rollout.phase}`, "running")),
    splitBar(d.traffic, d.shadows),
    h(
      "div",
      { class: "kpis" },
      kpi(fmt.num(s.requests_per_s, 2), "requests/s"),
      kpi(fmt.pct(s.error_rate), "error rate"),
      kpi(fmt.ms(s.p50_ms), "p50 latency"),
      kpi(fmt.ms(s.p95_ms), "p95 latency"),
      kpi(String(d.alerts), "firing alerts"),
      kpi(String(d.incidents), "open incidents"),
    ),
    h("small", { class: "muted" }, d.variants.map((v) => `${v.name}: ${v.model}`).join(" · "), d.quarantine ? ` · ${d.quarantine} quarantine rule(s)` : ""),
  );
}

function kpi(value, label) {
  return h("div", { class: "kpi" }, h("b", {}, value), h("span", {}, label));
}
