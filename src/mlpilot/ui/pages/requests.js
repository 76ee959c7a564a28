// Request explorer: a deployment's logged requests, newest first, filtered by variant, status, live/shadow
// traffic, start time and count. The filters live in the hash's query string (#/requests?deployment=iris&status=error)
// and are applied with setParams; a row (click, Enter or Space) opens its record: inputs (in.*), outputs (out.*),
// latency and decode time, trace id, error, and any label or feedback sent for it. Server errors show in the page.
import { api, badge, field, fill, fmt, h, section, setParams, table } from "../app.js";

const STATUSES = ["ok", "error", "quarantined"];
const FEEDBACK_TTL_MS = 30_000;

export async function render({ main, params }) {
  const results = h("div", { id: "request-results", "aria-live": "polite" });
  const detail = h("div", { id: "request-detail" });
  main.append(h("h1", {}, "Requests"));
  let deployments;
  try {
    deployments = (await api("deployments")) || [];
  } catch (e) {
    main.append(h("p", { class: "error" }, `Cannot list the deployments: ${e.message || e}`));
    return;
  }
  if (!deployments.length) {
    main.append(h("p", { class: "muted" }, "No deployments yet: requests are logged once a deployment serves traffic."));
    return;
  }
  const names = deployments.map((d) => d.name);
  const current = names.includes(params.deployment) ? params.deployment : names[0];
  const dep = deployments.find((d) => d.name === current);

  const deployment = h("select", { name: "deployment" }, names.map((n) => h("option", { value: n, selected: n === current }, n)));
  const listId = "variants-known";
  const variant = h("input", { name: "variant", value: params.variant || "", list: listId, placeholder: "any", autocomplete: "off" });
  const known = h("datalist", { id: listId }, ((dep && dep.spec && dep.spec.variants) || []).map((v) => h("option", { value: v.name })));
  const status = h("select", { name: "status" }, h("option", { value: "" }, "any"), STATUSES.map((s) => h("option", { value: s, selected: s === params.status }, s)));
  const traffic = h("select", { name: "shadow" }, [["", "live and shadow"], ["false", "live only"], ["true", "shadow only"]].map(([v, label]) => h("option", { value: v, selected: v === (params.shadow || "") }, label)));
  const since = h("input", { type: "datetime-local", name: "since", step: "1", value: params.since || "" });
  const limit = h("input", { type: "number", name: "limit", min: "1", max: "100000", step: "1", value: params.limit || "100", inputmode: "numeric" });
  const values = () => ({ deployment: deployment.value, variant: variant.value.trim(), status: status.value, shadow: traffic.value, since: since.value, limit: limit.value === "100" ? "" : limit.value });
  const form = h("form", { class: "inline", role: "search", "aria-label": "filter requests", onsubmit: (e) => (e.preventDefault(), setParams(values())) },
    field("deployment", deployment), field("variant", variant), known, field("status", status), field("traffic", traffic),
    field("since (local time)", since), field("at most (rows)", limit),
    h("button", { type: "submit" }, "Apply"),
    h("button", { type: "button", class: "secondary", onclick: () => setParams({ deployment: deployment.value }) }, "Clear filters"),
    h("button", { type: "button", class: "secondary", onclick: () => load() }, "Refresh"));
  main.append(section("Filters", form), detail, section(`Logged requests of ${current}`, results)); // detail first: in view

  const feedback = feedbackCache(current);
  const load = async () => {
    fill(results, h("p", { class: "muted" }, "Loading…"));
    let query;
    try {
      query = { variant: params.variant, status: params.status, shadow: params.shadow, limit: params.limit || 100, since: isoOrNull(params.since, "since") };
    } catch (e) {
      return fill(results, h("p", { class: "error" }, e.message));
    }
    let rows;
    try {
      rows = (await api(`deployments/${encodeURIComponent(current)}/logs`, { params: query })) || [];
    } catch (e) {
      return fill(results, h("p", { class: "error", role: "alert" }, e.message || String(e)));
    }
    const open = (r) => {
      const row = document.activeElement && document.activeElement.closest && document.activeElement.closest("tr");
      const close = () => (fill(detail), row && row.isConnected && row.focus()); // back to the row it came from
      fill(detail, record(r, feedback, close));
      const title = detail.querySelector("h2");
      title.tabIndex = -1; // keyboard users land on the record, Close brings them back
      title.focus();
    };
    fill(results,
      h("p", { class: "muted" }, `${rows.length} record(s)${rows.length >= Number(query.limit) ? ` (the newest ${query.limit}; raise "at most" for more)` : ""}`),
      table([
        { label: "time", get: (r) => h("span", { title: r.ts || "" }, fmt.time(r.ts)) },
        { label: "request id", get: (r) => h("code", {}, r.request_id || "–", r.row ? `#${r.row}` : "") },
        { label: "variant", get: (r) => [r.variant || "–", r.shadow ? [" ", badge("shadow")] : ""] },
        { label: "model", get: (r) => r.model || "–" },
        { label: "status", get: (r) => badge(r.status || "?", r.status === "quarantined" ? "warning" : r.status) },
        { label: "latency", get: (r) => ms(r.latency_s), class: "num" },
      ], rows, { onRow: open, empty: "No request matches these filters.", caption: "Select a request to see its record" }));
  };
  await load();
}

function isoOrNull(local, what) {
  if (!local) return undefined;
  const d = new Date(local); // a datetime-local value is local time; the API takes ISO 8601 with a zone
  if (Number.isNaN(d.getTime())) throw new Error(`${what}: ${JSON.stringify(local)} is not a date and time`);
  return d.toISOString();
}

function ms(seconds) {
  return typeof seconds === "number" ? fmt.ms(seconds * 1000) : "–";
}

/** Feedback of a deployment (the API returns all of it), fetched on first use and kept FEEDBACK_TTL_MS. */
function feedbackCache(deployment) {
  let at = 0, pending = null;
  return () => {
    if (!pending || Date.now() - at > FEEDBACK_TTL_MS) {
      at = Date.now();
      pending = api(`deployments/${encodeURIComponent(deployment)}/feedback`);
      pending.catch(() => (at = 0)); // retried next time
    }
    return pending;
  };
}

function record(r, feedback, close) {
  const ins = Object.entries(r).filter(([k]) => k.startsWith("in."));
  const outs = Object.entries(r).filter(([k]) => k.startsWith("out."));
  const kv = (rows, empty) => table([{ label: "column", get: (e) => h("code", {}, e[0]) }, { label: "value", get: (e) => value(e[1]) }], rows, { empty });
  const labels = h("div", {}, h("p", { class: "muted" }, "Loading feedback…"));
  feedback().then(
    (all) => {
      const mine = (all || []).filter((f) => f.request_id === r.request_id && (f.row || 0) === (r.row || 0));
      fill(labels, table([
        { label: "kind", get: (f) => f.kind },
        { label: "value", get: (f) => value(f.value) },
        { label: "event time", get: (f) => fmt.time(f.ts) },
        { label: "received", get: (f) => fmt.time(f.received_at) },
      ], mine, { empty: "No label or feedback for this request." }));
    },
    (e) => fill(labels, h("p", { class: "error" }, `Feedback unavailable: ${e.message || e}`)),
  );
  const facts = [
    ["time", fmt.time(r.ts)], ["row", r.row], ["deployment", r.deployment], ["variant", r.variant],
    ["model", r.model], ["status", r.status], ["shadow", r.shadow ? "yes (mirrored; its answer was not returned)" : "no"],
    ["latency", ms(r.latency_s)], ["decode time", ms(r.decode_s)], ["trace id", r.trace_id], ["sticky key", r.sticky_key],
  ];
  return section(`Request ${r.request_id || ""}${r.row ? ` row ${r.row}` : ""}`,
    h("button", { type: "button", class: "secondary", onclick: close }, "Close"),
    r.error ? h("p", { class: "error" }, `error: ${r.error}`) : null,
    h("dl", { class: "kpis" }, facts.map(([k, v]) => h("div", { class: "kpi" }, h("dt", {}, h("span", {}, k)), h("dd", { style: "margin: 0; overflow-wrap: anywhere" }, h("b", {}, v === null || v === undefined || v === "" ? "–" : String(v)))))),
    h("div", { class: "grid two" },
      h("div", {}, h("h3", {}, `Inputs (${ins.length})`), kv(ins, "No inputs logged (logging of inputs may be off).")),
      h("div", {}, h("h3", {}, `Outputs (${outs.length})`), kv(outs, "No outputs logged."))),
    h("h3", {}, "Label and feedback"), labels);
}

function value(v) {
  if (v === null || v === undefined) return h("span", { class: "muted" }, "–");
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(+v.toPrecision(6));
  if (typeof v === "object") return h("code", {}, JSON.stringify(v));
  const s = String(v);
  return s.length > 120 || s.includes("\n") ? h("pre", { class: "json" }, s) : s;
}
