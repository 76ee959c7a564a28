// Experiments: every rollout (canary, blue/green, A/B, bandit; with or without a shadow phase) newest first.
// Selecting one (click, Enter or Space; ?rollout=ID links to it) shows its decisions: per analysis gate the
// verdict and its statistic's confidence interval or sequence drawn around zero and the tolerance/margin, and for
// bandits the arms' allocations and posterior summaries. Polled: the list and the open rollout follow live.
import { api, badge, fill, flash, fmt, h, section, table } from "../app.js";
import { PALETTE, barChart, splitBar } from "../charts.js";

const NS = "http://www.w3.org/2000/svg";

export async function render({ main, params }) {
  const listBox = h("div", { id: "rollouts" });
  const detail = h("div", { id: "experiment" });
  const activeOnly = h("input", { type: "checkbox", id: "only-running", onchange: () => safe(true) });
  main.append(
    h("h1", {}, "Experiments"),
    h("div", { class: "row" }, activeOnly, h("label", { for: "only-running" }, "only running rollouts")),
    section("Rollouts and experiments", listBox),
    detail,
  );
  let selected = Number(params.rollout) || null;
  let listKey = null, detailKey = ""; // what is drawn, to redraw (and lose focus) only on change

  const open = (r, focus) => {
    selected = r.id;
    history.replaceState(null, "", `#/experiments?rollout=${r.id}`); // a link to it, without re-rendering the page
    detailKey = "";
    safe(true).then(() => focus && detail.querySelector("h2") && detail.querySelector("h2").focus());
  };
  const safe = (force) => refresh(force).catch((e) => flash(e.message || String(e), "error")); // never unhandled

  const refresh = async (force) => {
    const rollouts = (await api("rollouts", { params: { limit: 200, active: activeOnly.checked ? "true" : undefined } })) || [];
    rollouts.sort((a, b) => (b.started_at || "").localeCompare(a.started_at || "") || b.id - a.id);
    const key = rollouts.map((r) => `${r.id}:${r.revision}:${r.phase}`).join(",");
    if (force || key !== listKey) {
      listKey = key;
      const had = document.activeElement && document.activeElement.closest && document.activeElement.closest("#rollouts tr");
      const hadId = had && had.dataset.id;
      fill(listBox, table([
        { label: "#", get: (r) => `#${r.id}`, class: "num" },
        { label: "deployment", get: (r) => (r.deployment ? h("a", { href: `#/deployments/${encodeURIComponent(r.deployment)}` }, r.deployment) : "–") },
        { label: "strategy", get: (r) => strategy(r) },
        { label: "candidate vs baseline", get: (r) => [h("b", {}, or(r.candidate)), ` (${or(r.spec && (r.spec.candidate || (r.spec.release || {}).model))}) vs ${or(r.baseline)}`, (r.arms || []).length ? ` +${r.arms.length} arm(s)` : ""] },
        { label: "phase", get: (r) => badge(or(r.phase)) },
        { label: "started", get: (r) => h("span", { title: fmt.time(r.started_at) }, fmt.ago(r.started_at)) },
        { label: "last change", get: (r) => r.message || "–" },
      ], rollouts, { onRow: (r) => open(r, true), empty: "No rollouts yet: mlpilot rollout start DEPLOYMENT CANDIDATE" }));
      listBox.querySelectorAll("tbody tr").forEach((tr, i) => {
        tr.dataset.id = rollouts[i].id;
        if (rollouts[i].id === selected) tr.setAttribute("aria-current", "true");
        if (hadId && tr.dataset.id === hadId) tr.focus();
      });
    }
    const r = rollouts.find((x) => x.id === selected);
    if (!r) return fill(detail);
    if (!force && `${r.id}:${r.revision}` === detailKey) return;
    detailKey = `${r.id}:${r.revision}`;
    let decisions;
    try {
      decisions = (await api(`rollouts/${r.id}/decisions`)) || [];
    } catch (e) {
      return fill(detail, section(`Rollout #${r.id}`, h("p", { class: "error" }, e.message || String(e))));
    }
    fill(detail, rolloutDetail(r, decisions));
  };
  return () => refresh(false);
}

const or = (v, dflt = "?") => (v === null || v === undefined || v === "" ? dflt : v);

function strategy(r) {
  const s = (r.spec && r.spec.strategy) || "?";
  return [s.replace("_", "/"), r.spec && r.spec.shadow ? " + shadow" : ""];
}

function rolloutDetail(r, events) {
  const spec = r.spec || {};
  const steps = spec.strategy === "canary" ? (spec.steps || []).map((s) => `${s.weight}%`).join(" → ") : spec.strategy === "ab" && spec.split ? `${spec.split}% to the candidate` : "";
  const gates = (spec.analyses || []).map((a) => `${a.name || a.kind}${a.required ? "" : " (advisory)"}`).join(", ") || "none";
  const traffic = (r.last_decision || {}).traffic;
  const bandit = banditView(r, events);
  const decisions = [...events].filter((e) => e.after && e.action !== "rollout.started").reverse();
  const box = section(`Rollout #${r.id} on ${or(r.deployment)}`,
    h("div", { class: "row" }, badge(or(r.phase)), h("span", {}, strategy(r)), steps && h("span", { class: "muted" }, steps)),
    h("p", {}, h("b", {}, or(r.candidate)), " vs ", h("b", {}, or(r.baseline)), ` · gates: ${gates} · α ${or(spec.alpha)} · on fail: ${or(spec.on_fail)}, inconclusive: ${or(spec.on_inconclusive)}`),
    h("p", { class: "muted" }, `started ${fmt.time(r.started_at)} by ${or(r.created_by)}`, r.finished_at ? ` · finished ${fmt.time(r.finished_at)}` : "", r.message ? ` · ${r.message}` : ""),
    traffic && Object.keys(traffic).length ? [h("h3", {}, "Traffic"), splitBar(traffic)] : null,
    bandit,
    h("h3", {}, `Decisions (${decisions.length}, newest first)`),
    decisions.length ? h("ol", { class: "timeline", reversed: true }, decisions.map(decision)) : h("p", { class: "muted" }, "No decision yet."),
  );
  box.querySelector("h2").tabIndex = -1; // focused when a rollout is opened from the keyboard
  return box;
}

function decision(e) {
  const d = e.after || {};
  const from = d.from ? `${d.from.phase}${d.from.phase === "canary" ? ` step ${d.from.step + 1}` : ""}` : "";
  const to = d.to ? `${d.to.phase}${d.to.phase === "canary" ? ` step ${d.to.step + 1}` : ""}` : "";
  const inputs = d.inputs || {};
  const n = inputs.candidate ? ` · candidate ${inputs.candidate.requests} vs baseline ${(inputs.baseline || {}).requests} requests` : "";
  return h("li", {},
    h("b", {}, d.action || e.action), ` ${fmt.time(e.ts)} by ${e.actor}`, from && to ? ` · ${from} → ${to}` : "", n,
    d.reason ? h("div", {}, d.reason) : null,
    d.traffic ? h("div", { class: "muted" }, "split: ", Object.entries(d.traffic).map(([k, w]) => `${k} ${w}%`).join(", ")) : null,
    (d.analyses || []).length ? h("div", { class: "gates" }, d.analyses.map(gate)) : null,
    d.bandit ? h("details", {}, h("summary", {}, "arms at this update"), armsTable(d.bandit, d.traffic)) : null,
  );
}

function gate(a) {
  return h("div", { class: "hyp", "data-verdict": a.verdict },
    h("div", { class: "row" }, h("b", {}, a.name || a.kind), badge(a.verdict || "?"), h("span", { class: "muted" }, a.kind)),
    h("p", {}, a.message || ""),
    intervalsOf(a).map((g) => intervalChart(g)),
    h("details", {}, h("summary", {}, "statistics and thresholds"), h("pre", { class: "json" }, fmt.json({ statistics: a.statistics, thresholds: a.thresholds }))));
}

const iv = (x) => x && typeof x === "object" && "lower" in x && "upper" in x;
const num = (x) => (typeof x === "number" && Number.isFinite(x) ? x : null);

/** The interval(s) each analysis kind decides on, with the reference lines of its rule. */
function intervalsOf(a) {
  const s = a.statistics || {}, t = a.thresholds || {};
  const one = (title, label, x, refs) => ({ title, rows: [{ label, est: num(x.estimate), lo: num(x.lower), hi: num(x.upper) }], refs });
  const groups = [];
  if (iv(s.difference)) groups.push(one("candidate − baseline error rate", "difference", s.difference, [{ value: 0, label: "0" }, { value: num(t.tolerance), label: "tolerance" }]));
  if (iv(s.candidate_rate) && num(t.max_rate) !== null) groups.push(one("candidate error rate", "candidate", s.candidate_rate, [{ value: t.max_rate, label: "max rate" }]));
  if (s.exceedance && iv(s.exceedance.cs)) groups.push(one(`candidate share above the baseline's p${100 * (s.exceedance.q || 0.99)}`, "share", s.exceedance.cs, [{ value: num(s.exceedance.expected_share), label: "expected" }]));
  if (iv(s.agreement)) groups.push(one("agreement with the baseline", "agreement", s.agreement, [{ value: num(t.min_agreement), label: "min" }]));
  if (iv(s.score_difference)) groups.push(one(`candidate − baseline score${t.metric ? ` (${t.metric}; higher = candidate better)` : ""}`, "difference", s.score_difference, [{ value: 0, label: "0" }, { value: num(t.margin) !== null ? -t.margin : null, label: "−margin" }]));
  if (num(s.win_rate) !== null) groups.push(one("candidate win rate", "win rate", { estimate: s.win_rate, lower: s.low, upper: s.high }, [{ value: num(t.min_win_rate), label: "min" }]));
  if (a.kind === "eval" && (s.candidate || s.baseline)) {
    const row = (label, m) => m && { label, est: num(m.mean), lo: num(m.ci_low), hi: num(m.ci_high) };
    const base = s.baseline && num(s.baseline.mean);
    groups.push({ title: `${s.metric || "metric"} on ${s.dataset || "the eval set"}`, rows: [row("candidate", s.candidate), row("baseline", s.baseline)].filter(Boolean),
      refs: [{ value: num(t.min), label: "floor" }, { value: base !== null && num(t.max_drop) !== null ? base - t.max_drop : null, label: "baseline − max drop" }] });
  }
  return groups;
}

/** Horizontal interval bars on one axis, with dashed reference lines; an open end (unknown bound) reaches the edge. */
export function intervalChart({ title, rows, refs = [] }) {
  refs = refs.filter((r) => r.value !== null && r.value !== undefined);
  const vals = [...rows.flatMap((r) => [r.lo, r.hi, r.est]), ...refs.map((r) => r.value)].filter((v) => v !== null);
  if (!rows.length || !vals.length) return null;
  let x0 = Math.min(...vals), x1 = Math.max(...vals);
  const pad = (x1 - x0 || Math.abs(x1) || 1) * 0.12;
  x0 -= pad; x1 += pad;
  const W = 640, L = 150, R = 16, row = 26, T = 18, H = T + row * rows.length + 20;
  const X = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
  const f = (v) => (v === null ? "?" : String(+v.toFixed(4)));
  const refText = (r) => (r.label === f(r.value) ? r.label : `${r.label} ${f(r.value)}`);
  const text = rows.map((r) => `${rows.length > 1 ? `${r.label} ` : ""}${f(r.est)} [${f(r.lo)}, ${f(r.hi)}]`).concat(refs.map((r) => `${refText(r)}`)).join("; ");
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", style: "max-width: 720px", role: "img", "aria-label": `${title}: ${text}` }, el("title", {}, `${title}: ${text}`));
  refs.forEach((r, i) => {
    svg.append(el("line", { x1: X(r.value), x2: X(r.value), y1: T - 4, y2: H - 18, stroke: i ? "#b45309" : "#6b7280", "stroke-dasharray": "4 3" }));
    svg.append(el("text", { x: X(r.value), y: i % 2 ? H - 4 : T - 6, "text-anchor": "middle", class: "axis" }, refText(r))); // alternate above/below
  });
  rows.forEach((r, i) => {
    const y = T + row * i + row / 2, color = PALETTE[i % PALETTE.length];
    const lo = r.lo === null ? x0 : r.lo, hi = r.hi === null ? x1 : r.hi;
    svg.append(el("text", { x: L - 8, y: y + 4, "text-anchor": "end", class: "axis" }, r.label.length > 22 ? r.label.slice(0, 21) + "…" : r.label));
    svg.append(el("line", { x1: X(lo), x2: X(hi), y1: y, y2: y, stroke: color, "stroke-width": 6, "stroke-linecap": "round", opacity: 0.55 }, el("title", {}, `${r.label}: [${f(r.lo)}, ${f(r.hi)}]`)));
    if (r.est !== null) svg.append(el("circle", { cx: X(r.est), cy: y, r: 5, fill: color }, el("title", {}, `${r.label}: ${f(r.est)}`)));
  });
  return h("figure", { class: "chart-box" }, h("figcaption", {}, `${title}: ${text}`), svg);
}

function el(tag, attrs, ...children) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// ------------------------------------------------------------------------------------------------ bandits

function banditView(r, events) {
  if ((r.spec || {}).strategy !== "bandit") return null;
  const last = [...events].reverse().find((e) => e.after && e.after.bandit);
  const stats = (last && last.after.bandit) || (r.state || {}).bandit;
  const weights = (r.state || {}).weights || (last && last.after.traffic) || {};
  return [h("h3", {}, `Bandit arms (${(stats && stats.algorithm) || (r.spec.bandit || {}).algorithm})`, r.state && r.state.winner ? ` · winner ${r.state.winner}` : ""),
    Object.keys(weights).length ? barChart(Object.entries(weights).map(([label, value], i) => ({ label, value, color: PALETTE[i % PALETTE.length] })), { title: "allocation (% of traffic)", max: 100, format: (v) => `${v}%` }) : null,
    stats ? armsTable(stats, weights) : h("p", { class: "muted" }, "No reward observed yet.")];
}

/** Arms with successes/trials and the Beta(1+s, 1+n−s) posterior: its mean and an approximate 95% interval. */
function armsTable(stats, weights) {
  const arms = Object.entries(stats.arms || {}).map(([arm, a]) => {
    const s = num(a.successes) || 0, n = num(a.trials) || 0;
    const m = (s + 1) / (n + 2), sd = Math.sqrt((m * (1 - m)) / (n + 3));
    return { arm, s, n, mean: num(a.mean), post: m, lo: Math.max(0, m - 1.96 * sd), hi: Math.min(1, m + 1.96 * sd), w: (weights || {})[arm] };
  });
  if (!arms.length) return null;
  return [table([
    { label: "arm", get: (a) => a.arm },
    { label: "weight", get: (a) => (a.w === undefined ? "–" : `${a.w}%`), class: "num" },
    { label: "successes / trials", get: (a) => `${fmt.num(a.s)} / ${fmt.num(a.n)}`, class: "num" },
    { label: "observed mean", get: (a) => fmt.num(a.mean, 3), class: "num" },
    { label: "posterior mean [≈95%]", get: (a) => `${a.post.toFixed(3)} [${a.lo.toFixed(3)}, ${a.hi.toFixed(3)}]`, class: "num" },
  ], arms), intervalChart({ title: "posterior reward rate per arm", rows: arms.map((a) => ({ label: a.arm, est: a.post, lo: a.lo, hi: a.hi })) })];
}
