// A deployment: variants and traffic (with a form to change the split), the rollout with every gate's verdict and
// controls (start, pause, resume, promote, abort), traffic charts from the request log, monitors with their series
// (per-feature drift over time, performance from labels next to the label-free estimate, LLM metrics), SLOs.
import { act, api, badge, field, fill, flash, fmt, h, section, table } from "../app.js";
import { barChart, histogram, lineChart, splitBar } from "../charts.js";

export async function render({ main, args }) {
  const name = args[0];
  const dep0 = await api(`deployments/${encodeURIComponent(name)}`);
  const head = h("div", { class: "row" });
  const variants = h("div");
  const trafficForm = h("form", { class: "inline", "aria-label": "set traffic" });
  const rollout = h("div");
  const startForm = startRolloutForm(name);
  const charts = h("div", { class: "grid two" });
  const monitors = h("div");
  const slos = h("div");
  const dist = h("div");
  const llm = h("div");
  main.append(
    h("p", {}, h("a", { href: "#/" }, "← Overview")),
    h("h1", {}, "Deployment ", h("span", { id: "dep-name" }, name)),
    head,
    section("Variants and traffic", variants, h("h3", {}, "Change the split"), trafficForm),
    section("Rollout", rollout, h("details", {}, h("summary", {}, "Start a rollout"), startForm)),
    section("Traffic (last hour)", charts),
    h("div", { class: "grid two" }, section("Monitors", monitors), section("SLOs", slos)),
    section("Inputs: reference vs the last hour", dist.childNodes.length ? dist : fill(dist, h("p", { class: "muted" }, "Loading…"))),
    llm,
  );
  const distState = { feature: null, data: null };
  let slowAt = 0;
  let first = dep0; // the first refresh reuses the deployment just read
  buildTrafficForm(trafficForm, dep0);
  let lastRevision = dep0.revision;

  return async () => {
    const enc = encodeURIComponent(name);
    // the live numbers first (the deployment and its traffic series), then the rest: a large request log's
    // aggregation does not compete with the other reads
    const [dep, series] = await Promise.all([
      first ? Promise.resolve(first) : api(`deployments/${enc}`),
      api(`ui/deployments/${enc}/series`, { params: { window_s: 3600, buckets: 60 } }),
    ]);
    const s = series.summary.overall;
    fill(head, h("span", {}, `revision ${dep.revision}`), h("span", { class: "muted" }, `${fmt.num(s.requests_per_s, 2)} req/s · errors ${fmt.pct(s.error_rate)} · p95 ${fmt.ms(s.p95_ms)}`));
    fill(variants, splitBar(dep.spec.traffic, dep.spec.shadows), variantTable(dep, series.summary.variants));
    if (dep.revision !== lastRevision && !trafficForm.contains(document.activeElement)) {
      buildTrafficForm(trafficForm, dep);
      lastRevision = dep.revision;
    }
    fill(charts, ...trafficCharts(series));
    const [mons, sl, ro] = await Promise.all([
      api(`deployments/${enc}/monitors`),
      api(`deployments/${enc}/slos`),
      api("rollouts", { params: { deployment: name, limit: 1 } }).then((rs) => rs[0] || null),
    ]);
    fill(rollout, ro ? await rolloutPanel(ro) : h("p", { class: "muted" }, "No rollout yet."));
    fill(monitors, await monitorPanel(name, mons));
    fill(slos, sloTable(sl));
    first = null;
    if (Date.now() - slowAt > 30_000) {
      slowAt = Date.now();
      setTimeout(() => slowPanels(enc, dist, llm, distState), 0); // heavier reads, after the live data, every 30 s
    }
  };
}

async function slowPanels(enc, dist, llm, distState) {
  try {
    const [ds, lm] = await Promise.all([
      api(`ui/deployments/${enc}/distributions`, { params: { window_s: 3600 } }),
      api(`ui/deployments/${enc}/llm`, { params: { window_s: 3600, buckets: 60 } }),
    ]);
    if (!dist.isConnected) return; // the page was left meanwhile
    distState.data = ds;
    if (!dist.contains(document.activeElement)) fill(dist, distributionPanel(distState));
    fill(llm, lm.available ? section("LLM metrics (last hour)", h("div", { class: "grid two" }, ...llmCharts(lm))) : "");
  } catch (e) {
    if (dist.isConnected) fill(dist, h("p", { class: "error" }, e.message || String(e)));
  }
}

function distributionPanel(state) {
  const ds = state.data;
  if (!ds.available) return h("p", { class: "muted" }, `Not available: ${ds.reason}`);
  if (!ds.features.length) return h("p", { class: "muted" }, "No inputs to compare.");
  if (!ds.features.some((f) => f.feature === state.feature)) state.feature = ds.features[0].feature;
  const select = h("select", { name: "feature" }, ds.features.map((f) => h("option", { value: f.feature, selected: f.feature === state.feature }, f.feature)));
  const chart = h("div");
  const draw = () => {
    const f = ds.features.find((x) => x.feature === state.feature);
    fill(chart, histogram(f.bins, [{ name: `reference ${ds.reference} (${f.rows[0]} rows)`, values: f.reference }, { name: `last hour (${f.rows[1]} rows)`, values: f.current, color: "#dc2626" }], { title: `${f.feature} (${f.kind}), variant ${ds.variant}` }));
  };
  select.addEventListener("change", () => {
    state.feature = select.value;
    draw();
  });
  draw();
  return h("div", {}, h("form", { class: "inline", onsubmit: (e) => e.preventDefault() }, field("input", select)), chart);
}

function llmCharts(lm) {
  const variants = [...new Set(lm.series.map((r) => r.variant))];
  const per = (key) => variants.map((v) => ({ name: v, points: lm.series.filter((r) => r.variant === v).map((r) => [r.start, r[key]]) }));
  const range = { xMin: lm.since, xMax: lm.until };
  return [
    lineChart([...per("input_tokens").map((x) => ({ ...x, name: `${x.name} in` })), ...per("output_tokens").map((x) => ({ ...x, name: `${x.name} out` }))], { title: "tokens per request (input, output)", ...range }),
    lineChart(per("cost"), { title: "cost per bucket", ...range }),
    lineChart([...per("ttft_p50_ms").map((x) => ({ ...x, name: `${x.name} p50` })), ...per("ttft_p95_ms").map((x) => ({ ...x, name: `${x.name} p95` }))], { title: "time to first token (ms)", ...range }),
    lineChart(per("groundedness"), { title: "groundedness", yMax: 1, ...range }),
  ];
}

function variantTable(dep, stats) {
  return table(
    [
      { label: "variant", get: (v) => v.name },
      { label: "model", get: (v) => h("a", { href: `#/registry/${encodeURIComponent(v.model.split(":")[0])}` }, v.model) },
      { label: "weight", get: (v) => (dep.spec.shadows.includes(v.name) ? badge("shadow") : `${dep.spec.traffic[v.name] || 0}%`) },
      { label: "requests/s", class: "num", get: (v) => fmt.num((stats[v.name] || {}).requests_per_s, 2) },
      { label: "error rate", class: "num", get: (v) => fmt.pct((stats[v.name] || {}).error_rate) },
      { label: "p95", class: "num", get: (v) => fmt.ms((stats[v.name] || {}).p95_ms) },
    ],
    dep.spec.variants,
  );
}

function buildTrafficForm(form, dep) {
  const live = dep.spec.variants.filter((v) => !dep.spec.shadows.includes(v.name));
  const inputs = live.map((v) => {
    const input = h("input", { type: "number", min: 0, max: 100, step: 1, value: dep.spec.traffic[v.name] || 0, name: v.name, required: true, inputmode: "numeric" });
    return [v.name, input];
  });
  const button = h("button", { type: "submit" }, "Set traffic");
  const error = h("p", { class: "error", role: "alert" });
  fill(form, ...inputs.map(([n, i]) => field(`${n} (%)`, i)), button, error);
  form.onsubmit = (e) => {
    e.preventDefault();
    const weights = {};
    for (const [n, i] of inputs) {
      const v = Number(i.value);
      if (i.value === "" || !Number.isInteger(v) || v < 0 || v > 100) {
        error.textContent = `${n}: the weight must be a whole number from 0 to 100`;
        i.focus();
        return;
      }
      weights[n] = v;
    }
    const sum = Object.values(weights).reduce((a, b) => a + b, 0);
    if (sum !== 100) {
      error.textContent = `the weights add up to ${sum}; they must add up to 100`;
      return;
    }
    error.textContent = "";
    act(button, () => api(`deployments/${encodeURIComponent(dep.name)}/traffic`, { method: "PUT", body: { weights } }), (d) => `traffic of ${dep.name}: ${JSON.stringify(d.spec.traffic)}`);
  };
}

async function rolloutPanel(r) {
  const decisions = await api(`rollouts/${r.id}/decisions`);
  const buttons = h("div", { class: "row" });
  const control = (label, verb, cls) => {
    const b = h("button", { type: "button", class: cls }, label);
    b.addEventListener("click", () => act(b, () => api(`rollouts/${r.id}/${verb}`, { method: "POST" }), `rollout ${r.id}: ${verb}`));
    return b;
  };
  if (r.active) {
    if (r.phase === "paused") buttons.append(control("Resume", "resume"));
    else buttons.append(control("Pause", "pause", "secondary"));
    buttons.append(control("Promote now", "promote"), control("Abort", "abort", "danger"));
  }
  const steps = (r.spec.steps || []).map((s, i) => badge(`${s.weight}%`, i < r.step ? "pass" : i === r.step && r.phase === "canary" ? "running" : ""));
  const gated = [r.last_decision || {}, ...decisions.slice().reverse().map((e) => e.after || {})].find((a) => (a.analyses || []).length);
  return h(
    "div",
    { id: "rollout", "data-phase": r.phase },
    h("div", { class: "row" }, h("b", {}, `#${r.id}`), badge(r.phase), `${r.spec.strategy}: ${r.candidate} vs ${r.baseline}`, r.active ? "" : h("span", { class: "muted" }, `finished ${fmt.ago(r.finished_at)}`)),
    steps.length ? h("div", { class: "row", "aria-label": "steps" }, "steps ", ...steps) : null,
    h("p", { class: "muted" }, r.message),
    buttons,
    gated ? gates(gated.analyses) : null,
    h("h3", {}, "Decisions"),
    table(
      [
        { label: "when", get: (e) => fmt.time(e.ts) },
        { label: "action", get: (e) => badge((e.after || {}).action || e.action, (e.after || {}).action) },
        { label: "reason", get: (e) => (e.after || {}).reason || "" },
      ],
      decisions.slice().reverse(),
      { empty: "No decision yet." },
    ),
  );
}

function gates(analyses) {
  return table(
    [
      { label: "gate", get: (a) => a.name || a.kind },
      { label: "verdict", get: (a) => badge(a.verdict) },
      { label: "statistics", get: (a) => a.message || "" },
    ],
    analyses,
    { caption: "Every gate's verdict at the latest gated decision" },
  );
}

function startRolloutForm(name) {
  const candidate = h("input", { name: "candidate", placeholder: "model:2 or model@challenger", required: true });
  const steps = h("input", { name: "steps", value: "10,50,100", pattern: "[0-9, ]+", required: true });
  const duration = h("input", { name: "duration", value: "5m", required: true });
  const button = h("button", { type: "submit" }, "Start rollout");
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "inline", "aria-label": "start a rollout" }, field("candidate model", candidate), field("canary steps (%)", steps, "comma-separated"), field("each step at least", duration, "e.g. 30s, 5m"), button, error);
  form.onsubmit = (e) => {
    e.preventDefault();
    const weights = steps.value.split(",").map((x) => x.trim()).filter(Boolean).map(Number);
    if (!candidate.value.trim()) return void (error.textContent = "name the candidate model, e.g. fraud:3");
    if (!weights.length || weights.some((w) => !Number.isInteger(w) || w < 1 || w > 100)) {
      error.textContent = "steps are whole percentages from 1 to 100, e.g. 10,50,100";
      return;
    }
    error.textContent = "";
    const body = { candidate: candidate.value.trim(), steps: weights.map((w) => ({ weight: w, min_duration: duration.value.trim() })) };
    act(button, () => api(`deployments/${encodeURIComponent(name)}/rollouts`, { method: "POST", body }), (r) => `rollout ${r.id} started: ${r.message}`).then((r) => r === undefined && (error.textContent = document.querySelector(".flash.error")?.textContent || ""));
  };
  return form;
}

function trafficCharts(series) {
  const variants = [...new Set(series.series.map((r) => r.variant))];
  const per = (fn) => variants.map((v) => ({ name: v, points: series.series.filter((r) => r.variant === v).map((r) => [r.start, fn(r)]) }));
  const range = { xMin: series.since, xMax: series.until };
  return [
    lineChart(per((r) => r.requests / series.bucket_s), { title: "requests/s", ...range }),
    lineChart(per((r) => (r.requests - r.quarantined ? r.errors / (r.requests - r.quarantined) : null)), { title: "error rate", yFormat: (v) => fmt.pct(v, 0), ...range }),
    lineChart(per((r) => r.p95_ms), { title: "p95 latency (ms)", ...range }),
    lineChart(per((r) => r.quarantined / series.bucket_s), { title: "quarantined requests/s", ...range }),
  ];
}

async function monitorPanel(name, mons) {
  if (!mons.length) return h("p", { class: "muted" }, "No monitors.");
  const enc = encodeURIComponent(name);
  const results = await Promise.all(mons.map((m) => api(`deployments/${enc}/monitors/${encodeURIComponent(m.name)}/results`, { params: { limit: 200 } }).catch(() => [])));
  const out = [
    table(
      [
        { label: "monitor", get: (m) => m.name },
        { label: "kind", get: (m) => m.spec.kind },
        { label: "last", get: (m, i) => lastBadge(results[mons.indexOf(m)]) },
        { label: "message", get: (m) => ((results[mons.indexOf(m)] || []).at(-1) || {}).message || "" },
      ],
      mons,
    ),
  ];
  mons.forEach((m, i) => {
    const rs = (results[i] || []).slice().sort((a, b) => a.ts.localeCompare(b.ts));
    if (!rs.length) return;
    if (m.spec.kind === "drift") {
      const last = features(rs.at(-1));
      const top = Object.entries(last).sort((a, b) => b[1].statistic - a[1].statistic).slice(0, 5).map((x) => x[0]);
      out.push(lineChart(top.map((f) => ({ name: f, points: rs.map((r) => [r.ts, (features(r)[f] || {}).statistic ?? null]) })), { title: `${m.name}: per-feature drift statistic over time (top 5)`, legend: true }));
      const bars = Object.entries(last).map(([f, x]) => ({ label: f, value: x.statistic || 0, color: x.drifted ? "#dc2626" : "#2563eb", title: `${f}: ${x.test || "statistic"} ${(x.statistic || 0).toFixed(3)}, p=${x.p_value ?? "–"}${x.drifted ? " (drifted)" : ""}` }));
      out.push(barChart(bars.sort((a, b) => b.value - a.value).slice(0, 10), { title: `${m.name}: latest drift by feature (red: drifted)`, format: (v) => v.toFixed(3) }));
    } else {
      out.push(lineChart([{ name: m.name, points: rs.map((r) => [r.ts, r.value]) }], { title: `${m.name} (${m.spec.kind})` }));
    }
  });
  const perf = mons.filter((m) => ["performance", "estimated_performance"].includes(m.spec.kind));
  if (perf.length === 2) {
    out.push(lineChart(perf.map((m) => ({ name: `${m.name} (${m.spec.kind})`, points: (results[mons.indexOf(m)] || []).map((r) => [r.ts, r.value]) })), { title: "performance from labels vs the label-free estimate" }));
  }
  return h("div", {}, ...out);
}

/** A drift result's features as {name: {statistic, drifted, test, p_value}} (the detail holds a list). */
function features(result) {
  const raw = ((result || {}).detail || {}).features || [];
  const list = Array.isArray(raw) ? raw : Object.entries(raw).map(([feature, v]) => ({ feature, ...v }));
  return Object.fromEntries(list.map((f) => [f.feature || f.name, { ...f, statistic: Number(f.statistic) || 0, drifted: Boolean(f.is_drift ?? f.drifted) }]));
}

function lastBadge(rs) {
  const r = (rs || []).at(-1);
  return r ? badge(r.status, { ok: "ok", alert: "critical", warning: "warning" }[r.status] || r.status) : h("span", { class: "muted" }, "not run");
}

function sloTable(slos) {
  return table(
    [
      { label: "SLO", get: (s) => s.name || s.slo || (s.definition || {}).name },
      { label: "indicator", get: (s) => ((s.spec || (s.definition || {}).spec) || {}).indicator || "" },
      { label: "budget left", get: (s) => fmt.pct((s.status || s).budget_remaining) },
      { label: "alert", get: (s) => ((s.status || s).alert ? badge((s.status || s).alert.severity) : "–") },
    ],
    slos,
    { empty: "No SLOs." },
  );
}

export { flash };
