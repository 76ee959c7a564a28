// Incidents: the list, and one incident with its timeline, ranked hypotheses (each with the evidence it cites, drawn),
// the remediations with their decision records and verification, and approve / reject for a waiting suggestion.
import { act, api, badge, field, fill, fmt, h, section, setParams, table } from "../app.js";
import { barChart } from "../charts.js";

export async function render({ main, args, params }) {
  return args[0] ? detail(main, Number(args[0])) : list(main, params);
}

async function list(main, params) {
  const status = h("select", { name: "status" }, ["", "open", "mitigating", "mitigated", "resolved"].map((s) => h("option", { value: s, selected: params.status === s }, s || "any")));
  status.addEventListener("change", () => setParams({ ...params, status: status.value }));
  const body = h("div");
  main.append(h("h1", {}, "Incidents"), h("form", { class: "inline", "aria-label": "filter incidents", onsubmit: (e) => e.preventDefault() }, field("status", status)), body);
  return async () => {
    const rows = await api("incidents", { params: { status: params.status, limit: 200 } });
    fill(
      body,
      table(
        [
          { label: "#", get: (i) => h("a", { href: `#/incidents/${i.id}` }, `#${i.id}`) },
          { label: "deployment", get: (i) => i.deployment },
          { label: "status", get: (i) => badge(i.status) },
          { label: "severity", get: (i) => badge(i.severity) },
          { label: "opened", get: (i) => fmt.time(i.opened_at) },
          { label: "title", get: (i) => i.title },
        ],
        rows,
        { empty: "No incidents.", onRow: (i) => (location.hash = `#/incidents/${i.id}`) },
      ),
    );
  };
}

async function detail(main, id) {
  const head = h("div");
  const diag = h("div");
  const rems = h("div");
  const timeline = h("div");
  main.append(
    h("p", {}, h("a", { href: "#/incidents" }, "← Incidents")),
    h("h1", {}, `Incident #${id}`),
    head,
    section("Remediations", rems),
    section("Diagnosis", diag),
    section("Timeline", timeline),
  );
  return async () => {
    const { incident: inc, timeline: tl, remediations: rs, diagnosis: d } = await api(`ui/incidents/${id}`);
    fill(head, header(inc));
    fill(rems, remediations(id, rs));
    fill(diag, d ? diagnosis(d) : h("p", { class: "muted" }, "Not diagnosed yet."));
    fill(
      timeline,
      h("ol", { class: "timeline" }, tl.slice().reverse().map((e) => h("li", {}, h("b", {}, e.action), " ", h("span", { class: "muted" }, `${fmt.time(e.ts)} · ${e.subject} · ${e.actor}`), reason(e)))),
    );
  };
}

function reason(e) {
  const a = e.after || {};
  const text = a.reason || a.summary || (a.verification && a.verification.reason) || "";
  return text ? h("div", {}, text) : null;
}

function header(inc) {
  const ack = h("button", { type: "button", class: "secondary" }, "Acknowledge");
  ack.addEventListener("click", () => act(ack, () => api(`incidents/${inc.id}/ack`, { method: "POST" }), "acknowledged"));
  const diagnose = h("button", { type: "button", class: "secondary" }, "Diagnose again");
  diagnose.addEventListener("click", () => act(diagnose, () => api(`incidents/${inc.id}/diagnose`, { method: "POST" }), (d) => `diagnosis: ${d.verdict}`));
  const why = h("input", { name: "reason", placeholder: "what fixed it" });
  const resolve = h("button", { type: "submit", class: "danger" }, "Resolve");
  const form = h("form", { class: "inline", "aria-label": "resolve the incident" }, field("reason", why), resolve);
  form.onsubmit = (e) => {
    e.preventDefault();
    act(resolve, () => api(`incidents/${inc.id}/resolve`, { method: "POST", body: { reason: why.value } }), "resolved");
  };
  const closed = inc.status === "resolved";
  return h(
    "div",
    { class: "card" },
    h("div", { class: "row" }, h("span", { id: "incident-status" }, badge(inc.status)), badge(inc.severity), h("b", {}, inc.title), h("a", { href: `#/deployments/${encodeURIComponent(inc.deployment)}` }, inc.deployment)),
    h("p", { class: "muted" }, `opened ${fmt.time(inc.opened_at)}`, inc.acknowledged_by ? ` · acknowledged by ${inc.acknowledged_by}` : "", inc.resolved_at ? ` · resolved ${fmt.time(inc.resolved_at)}` : ""),
    closed ? null : h("div", { class: "row" }, inc.acknowledged_by ? null : ack, diagnose, form),
  );
}

function remediations(id, rs) {
  if (!rs.length) return h("p", { class: "muted" }, "No remediation yet.");
  return h(
    "div",
    {},
    rs.map((r) => {
      const a = r.action || {};
      const box = h(
        "div",
        { class: "hyp remediation", "data-state": r.state },
        h("div", { class: "row" }, badge(r.state), h("b", {}, a.kind), h("code", {}, a.target), h("span", { class: "muted" }, JSON.stringify(a.params || {}))),
        r.decision ? h("p", {}, r.decision.reason, r.decision.approved_by ? ` · approved by ${r.decision.approved_by}` : "") : null,
        r.plan ? h("p", { class: "muted" }, r.plan) : null,
        r.error ? h("p", { class: "error" }, r.error) : null,
        r.verification ? h("p", {}, `verification: ${r.verification.helped ? "helped" : "did not help"} — ${r.verification.reason} (during ${fmt.num(r.verification.before, 3)} → after ${fmt.num(r.verification.after, 3)})`) : null,
        r.decision && r.decision.checks ? h("p", { class: "muted" }, "checks: ", Object.entries(r.decision.checks).map(([k, ok]) => `${ok ? "✓" : "✗"} ${k}`).join("  ")) : null,
      );
      if (r.state === "suggested") {
        const approve = h("button", { type: "button" }, "Approve");
        approve.addEventListener("click", () => act(approve, () => api(`incidents/${id}/approve`, { method: "POST" }), (x) => `remediation ${x.id}: ${x.state}`));
        const why = h("input", { name: "reject-reason", placeholder: "why not" });
        const reject = h("button", { type: "submit", class: "danger" }, "Reject");
        const form = h("form", { class: "inline", "aria-label": "reject the suggestion" }, field("reason for rejecting", why), reject);
        form.onsubmit = (e) => {
          e.preventDefault();
          act(reject, () => api(`incidents/${id}/reject`, { method: "POST", body: { reason: why.value } }), "rejected");
        };
        box.append(h("div", { class: "row" }, approve, form));
      }
      return box;
    }),
  );
}

function diagnosis(d) {
  const evidence = Object.fromEntries((d.evidence || []).map((e) => [e.ref, e]));
  return h(
    "div",
    { id: "diagnosis" },
    h("p", {}, badge(d.verdict), " ", d.summary),
    d.symptom ? h("p", { class: "muted" }, `symptom: ${d.symptom.kind} (${d.symptom.metric}), onset ${fmt.time(d.onset || d.symptom.onset)}`) : null,
    (d.hypotheses || []).slice(0, 5).map((hy, i) =>
      h(
        "div",
        { class: "hyp hypothesis" },
        h("div", { class: "row" }, h("b", {}, `${i + 1}. ${hy.cause}`), h("code", {}, hy.component), badge(fmt.pct(hy.confidence, 0), hy.confidence >= 0.7 ? "ok" : "warning"), hy.source === "agent" ? badge("agent") : null),
        h("p", {}, hy.rationale),
        hy.suggestion ? h("p", { class: "muted" }, `suggests ${hy.suggestion.action} on ${hy.suggestion.target}: ${hy.suggestion.why}`) : null,
        hy.evidence && hy.evidence.length
          ? barChart(
              hy.evidence.map((ref) => evidence[ref]).filter(Boolean).map((e) => ({ label: e.ref, value: e.effect, title: e.summary })),
              { title: "evidence (effect size; hover for the finding)", format: (v) => v.toFixed(2) },
            )
          : null,
        h("ul", {}, (hy.evidence || []).map((ref) => h("li", {}, h("code", {}, ref), " ", evidence[ref] ? evidence[ref].summary : ""))),
      ),
    ),
    (d.hypotheses || []).length > 5
      ? h(
          "details",
          {},
          h("summary", {}, `${d.hypotheses.length - 5} weaker hypotheses`),
          table(
            [
              { label: "cause", get: (x) => x.cause },
              { label: "component", get: (x) => x.component },
              { label: "confidence", class: "num", get: (x) => fmt.pct(x.confidence, 1) },
            ],
            d.hypotheses.slice(5),
          ),
        )
      : null,
  );
}
