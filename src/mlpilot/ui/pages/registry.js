// Registry: every artifact grouped by kind with its latest version and aliases (#/registry, ?kind= filters), and
// one artifact (#/registry/NAME): versions, aliases, lineage (what each version derives from and is bound to, what
// refers to it, where it is served), a version's metadata and signature, and a diff of two versions (signature,
// metadata, evals; prompts, tools and apps also as a line diff computed here). ?a=&b= preselect the diff.
import { api, badge, field, fill, fmt, h, section, table } from "../app.js";

const KINDS = ["model", "dataset", "prompt", "index", "tool", "app"];
const ROLE = { parent: "derived from", reference: "reference data" };

export async function render({ main, args, params }) {
  return args[0] ? artifactPage(main, args[0], params) : listPage(main, params);
}

// ------------------------------------------------------------------------------------------------ the list

async function listPage(main, params) {
  const kind = KINDS.includes(params.kind) ? params.kind : "";
  const filter = () => { // in place (focus stays in the control); the URL follows for links, without a reload
    history.replaceState(null, "", select.value ? `#/registry?kind=${select.value}` : "#/registry");
    draw();
  };
  const select = h("select", { onchange: filter }, h("option", { value: "" }, "all kinds"), KINDS.map((k) => h("option", { value: k, selected: k === kind }, k)));
  const search = h("input", { type: "search", placeholder: "part of a name", oninput: () => draw() });
  const out = h("div");
  main.append(h("h1", {}, "Registry"), h("form", { class: "inline", role: "search", "aria-label": "filter artifacts",
    onsubmit: (e) => e.preventDefault() }, field("kind", select), field("name contains", search)), out);
  let artifacts = [], drawn = null;
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const shown = artifacts.filter((a) => !q || a.name.toLowerCase().includes(q));
    const groups = KINDS.filter((k) => !select.value || k === select.value).map((k) => [k, shown.filter((a) => a.kind === k)]).filter(([, l]) => l.length);
    fill(out, groups.length ? groups.map(([k, list]) => section(`${k === "index" ? "indexes" : `${k}s`} (${list.length})`, table([
      { label: "name", get: (a) => h("a", { href: `#/registry/${encodeURIComponent(a.name)}` }, a.name) },
      { label: "latest", get: (a) => (a.latest_version ? `${a.name}:${a.latest_version}` : "–") },
      { label: "aliases", get: (a) => aliasBadges(a.aliases) },
      { label: "created", get: (a) => `${fmt.ago(a.created_at)} by ${a.created_by}` },
    ], list, { onRow: (a) => (location.hash = `#/registry/${encodeURIComponent(a.name)}`) })))
      : h("p", { class: "muted" }, artifacts.length ? "No artifact matches." : "Nothing registered yet: mlpilot models register NAME FILE"));
  };
  return async () => {
    artifacts = (await api("artifacts")) || [];
    const key = JSON.stringify(artifacts);
    if (key !== drawn) (drawn = key), draw(); // redraw (and lose the focused row) only when something changed
  };
}

function aliasBadges(aliases) {
  const e = Object.entries(aliases || {});
  return e.length ? e.map(([k, v]) => [badge(`${k} → v${v}`, "alias"), " "]) : h("span", { class: "muted" }, "–");
}

// ------------------------------------------------------------------------------------------------ one artifact

async function artifactPage(main, name, params) {
  const enc = encodeURIComponent(name);
  let art;
  try {
    art = await api(`artifacts/${enc}`);
  } catch (e) {
    main.append(h("h1", {}, name), h("p", { class: "error" }, e.message || String(e)), h("p", {}, h("a", { href: "#/registry" }, "← Registry")));
    return;
  }
  const [versions, aliases] = await Promise.all([api(`artifacts/${enc}/versions`), api(`artifacts/${enc}/aliases`)]);
  const byNum = new Map(versions.map((v) => [v.version, v]));
  const latest = versions[versions.length - 1];
  const detail = h("div", { id: "version-detail" });
  const lineage = h("div", { id: "lineage" }, h("p", { class: "muted" }, "Loading…"));
  const select = (v) => {
    fill(detail, h("h3", { tabindex: "-1" }, `${v.name}:${v.version}`), versionDetail(v));
    detail.querySelector("h3").focus();
  };
  main.append(
    h("p", {}, h("a", { href: "#/registry" }, "← Registry")),
    h("h1", {}, name, " ", badge(art.kind, "kind")),
    section("Versions", table([
      { label: "version", get: (v) => h("b", {}, `${v.name}:${v.version}`) },
      { label: "digest", get: (v) => h("code", { title: v.digest }, shortDigest(v.digest)) },
      { label: "size", get: (v) => bytes(v.size), class: "num" },
      { label: "flavor", get: (v) => v.flavor || "–" },
      { label: "created", get: (v) => h("span", { title: fmt.time(v.created_at) }, `${fmt.ago(v.created_at)} by ${v.created_by}`) },
      { label: "aliases", get: (v) => (v.aliases || []).map((a) => [badge(a, "alias"), " "]) },
      { label: "tags", get: (v) => tagList(v.tags) },
    ], [...versions].reverse(), { onRow: select, empty: "No versions yet.", caption: "Select a version for its metadata" })),
    section("Aliases", table([
      { label: "alias", get: (a) => a.alias },
      { label: "version", get: (a) => `${a.name}:${a.version}` },
      { label: "moved", get: (a) => `${fmt.ago(a.updated_at)} by ${a.updated_by}` },
    ], aliases || [], { empty: "No aliases." })),
    section("Lineage", lineage),
    section("Version details", detail),
    section("Compare versions", diffPanel(name, versions, params)),
  );
  if (latest) fill(detail, h("h3", { tabindex: "-1" }, `${latest.name}:${latest.version} (latest)`), versionDetail(latest));
  else fill(detail, h("p", { class: "muted" }, "No versions yet."));
  try {
    fill(lineage, lineageList(await api(`ui/artifacts/${enc}/lineage`), byNum));
  } catch (e) {
    fill(lineage, h("p", { class: "error" }, `Lineage unavailable: ${e.message}`), lineageList({ versions: versions.map(localLineage) }, byNum));
  }
}

function versionDetail(v) {
  const meta = Object.entries(flatten(v.metadata || {}));
  const sig = v.signature;
  return [
    h("p", { class: "muted" }, `${v.filename || ""} · ${bytes(v.size)} · `, h("code", { style: "word-break: break-all" }, v.digest), v.unsafe ? " · pickle-based (loads only from the store)" : ""),
    h("h3", {}, "Metadata"),
    table([{ label: "key", get: (r) => r[0] }, { label: "value", get: (r) => show(r[1]) }], meta, { empty: "No metadata." }),
    sig && h("details", {}, h("summary", {}, `Signature: ${(sig.inputs || []).length} input(s), ${(sig.outputs || []).length} output(s)${sig.columnar ? " (columnar)" : ""}`), table([
      { label: "", get: (t) => t.io },
      { label: "name", get: (t) => t.name },
      { label: "datatype", get: (t) => t.datatype },
      { label: "shape", get: (t) => JSON.stringify(t.shape) },
    ], [...(sig.inputs || []).map((t) => ({ ...t, io: "input" })), ...(sig.outputs || []).map((t) => ({ ...t, io: "output" }))])),
  ];
}

// ------------------------------------------------------------------------------------------------ lineage

/** What a version points at, from its record alone (when the lineage endpoint is unavailable). */
function localLineage(v) {
  const uses = (v.parents || []).map((ref) => ({ role: "parent", ref }));
  for (const [role, ref] of Object.entries(v.bindings || {})) uses.push({ role, ref });
  const app = (v.metadata || {}).app || {};
  if (app.prompt) uses.push({ role: "prompt", ref: app.prompt });
  if (app.retriever && app.retriever.index) uses.push({ role: "index", ref: app.retriever.index });
  for (const t of app.tools || []) uses.push({ role: "tool", ref: t });
  return { version: v.version, ref: `${v.name}:${v.version}`, uses, used_by: [], served_by: [] };
}

function refLink(ref) {
  const name = String(ref).split(/[:@]/)[0];
  return h("a", { href: `#/registry/${encodeURIComponent(name)}` }, ref);
}

function lineageList(data, byNum) {
  const versions = [...(data.versions || [])].reverse();
  if (!versions.length) return h("p", { class: "muted" }, "No versions yet.");
  return h("ul", { class: "lineage" }, versions.map((v) => {
    const items = [
      ...(v.uses || []).map((u) => h("li", {}, `${ROLE[u.role] || u.role}: `, refLink(u.ref),
        u.resolved && u.resolved !== u.ref ? [" → ", refLink(u.resolved)] : "", u.kind ? ` (${u.kind})` : "",
        "resolved" in u && !u.resolved ? h("span", { class: "error" }, " (not found)") : "")),
      ...(v.used_by || []).map((u) => h("li", {}, `used by ${u.kind || ""} `, refLink(u.ref), ` as ${ROLE[u.role] || u.role}`)),
      ...(v.served_by || []).map((s) => h("li", {}, "served by ", h("a", { href: `#/deployments/${encodeURIComponent(s.deployment)}` }, s.deployment),
        ` / ${s.variant} (${s.shadow ? "shadow" : `${s.weight}%`})`)),
    ];
    const aliases = (byNum.get(v.version) || {}).aliases || [];
    return h("li", {}, h("b", {}, v.ref), aliases.length ? ` @${aliases.join(" @")}` : "",
      items.length ? h("ul", {}, items) : h("span", { class: "muted" }, " — no links"));
  }));
}

// ------------------------------------------------------------------------------------------------ diff

function diffPanel(name, versions, params) {
  if (versions.length < 2) return h("p", { class: "muted" }, "Only one version: nothing to compare yet.");
  const nums = versions.map((v) => String(v.version));
  const pick = (want, dflt) => (nums.includes(want) ? want : dflt);
  const opts = (sel) => [...versions].reverse().map((v) => h("option", { value: v.version, selected: String(v.version) === sel }, `${v.name}:${v.version}${v.aliases && v.aliases.length ? ` (@${v.aliases.join(", @")})` : ""}`));
  const a = h("select", { onchange: () => run() }, opts(pick(params.a, nums[nums.length - 2])));
  const b = h("select", { onchange: () => run() }, opts(pick(params.b, nums[nums.length - 1])));
  const all = h("input", { type: "checkbox", onchange: () => run() });
  const out = h("div", { "aria-live": "polite" });
  let gen = 0;
  const run = async () => {
    const mine = ++gen;
    fill(out, h("p", { class: "muted" }, "Comparing…"));
    try {
      const d = await api(`ui/artifacts/${encodeURIComponent(name)}/diff`, { params: { a: a.value, b: b.value } });
      if (mine === gen) fill(out, diffView(d, all.checked));
    } catch (e) {
      if (mine === gen) fill(out, h("p", { class: "error" }, e.message || String(e)));
    }
  };
  run();
  return [h("form", { class: "inline", "aria-label": "versions to compare", onsubmit: (e) => (e.preventDefault(), run()) },
    field("from version (a)", a), field("to version (b)", b),
    h("div", { class: "field" }, h("label", {}, all, " show unchanged rows"))), out];
}

function diffView(d, showSame) {
  const parts = [h("p", {}, h("b", {}, d.a.ref), " → ", h("b", {}, d.b.ref), d.a.ref === d.b.ref ? h("span", { class: "muted" }, " (the same version)") : "")];
  if (d.text) parts.push(h("h3", {}, d.kind === "prompt" ? "Template" : "Document"), textDiff(d.text.a || [], d.text.b || []));
  if (d.signature) parts.push(h("h3", {}, "Signature"), signatureDiff(d.signature));
  if ((d.evals || []).length) parts.push(h("h3", {}, "Evals"), pairTable(d.evals, true, (v) => (v && typeof v === "object" ? `${fmt.num(v.mean, 3)} [${fmt.num(v.ci_low, 3)}, ${fmt.num(v.ci_high, 3)}] n=${v.n}` : show(v))));
  let meta = d.metadata || [];
  if (d.kind === "index") { // the fields that decide compatibility first: embedding model and corpus
    const key = (r) => (/^index\.(embedding|corpus)/.test(r.key) ? 0 : 1);
    meta = [...meta].sort((x, y) => key(x) - key(y));
  }
  parts.push(h("h3", {}, "Metadata"), pairTable(meta, showSame), h("h3", {}, "Version"), pairTable(d.fields || [], showSame));
  if ((d.tags || []).length) parts.push(h("h3", {}, "Tags"), pairTable(d.tags, showSame));
  return parts;
}

function pairTable(rows, showSame, cell = show) {
  const shown = rows.filter((r) => showSame || r.status !== "same");
  const hidden = rows.length - shown.length;
  return [table([
    { label: "key", get: (r) => r.key },
    { label: "a", get: (r) => cell(r.a) },
    { label: "b", get: (r) => cell(r.b) },
    { label: "change", get: (r) => [badge(r.status, { same: "same", changed: "warning", added: "ok", removed: "critical" }[r.status]), delta(r.a, r.b)] },
  ], shown, { empty: rows.length ? "No differences." : "Nothing on either side." }),
  hidden ? h("p", { class: "muted" }, `${hidden} unchanged row(s) hidden.`) : null];
}

function signatureDiff(sig) {
  const tensor = (t) => `${t.name}: ${t.datatype}${JSON.stringify(t.shape)}`;
  const side = (label, s) => {
    const lines = [
      ...s.added.map((t) => h("ins", {}, `+ ${tensor(t)}`)),
      ...s.removed.map((t) => h("del", {}, `- ${tensor(t)}`)),
      ...s.changed.map((c) => [h("del", {}, `- ${tensor(c.a)}`), h("ins", {}, `+ ${tensor(c.b)}`)]),
    ];
    return [h("p", {}, h("b", {}, label), ` — ${s.added.length} added, ${s.removed.length} removed, ${s.changed.length} changed, ${s.unchanged} unchanged`),
      lines.length ? h("pre", { class: "diff" }, lines) : null];
  };
  return [!sig.a || !sig.b ? h("p", { class: "muted" }, `only ${sig.a ? "a" : "b"} has a signature`) : null,
    side("inputs", sig.inputs), side("outputs", sig.outputs),
    sig.columnar.a !== sig.columnar.b ? h("p", {}, `columnar: ${sig.columnar.a} → ${sig.columnar.b}`) : null];
}

/** Line diff by longest common subsequence: [op, line] with op "=", "-" or "+"; common ends are trimmed first. */
export function lineDiff(a, b) {
  let p = 0;
  while (p < a.length && p < b.length && a[p] === b[p]) p++;
  let s = 0;
  while (s < a.length - p && s < b.length - p && a[a.length - 1 - s] === b[b.length - 1 - s]) s++;
  const A = a.slice(p, a.length - s), B = b.slice(p, b.length - s);
  const same = (l) => ["=", l];
  let mid;
  if (A.length * B.length > 4e6) mid = [...A.map((l) => ["-", l]), ...B.map((l) => ["+", l])]; // too big: replace
  else {
    const L = Array.from({ length: A.length + 1 }, () => new Uint32Array(B.length + 1));
    for (let i = A.length - 1; i >= 0; i--) for (let j = B.length - 1; j >= 0; j--) L[i][j] = A[i] === B[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
    mid = [];
    let i = 0, j = 0;
    while (i < A.length && j < B.length) {
      if (A[i] === B[j]) (mid.push(same(A[i])), i++, j++);
      else if (L[i + 1][j] >= L[i][j + 1]) mid.push(["-", A[i++]]);
      else mid.push(["+", B[j++]]);
    }
    while (i < A.length) mid.push(["-", A[i++]]);
    while (j < B.length) mid.push(["+", B[j++]]);
  }
  return [...a.slice(0, p).map(same), ...mid, ...a.slice(a.length - s).map(same)];
}

function textDiff(a, b) {
  const ops = lineDiff(a, b);
  const changed = ops.filter(([op]) => op !== "=").length;
  if (!changed) return h("p", { class: "muted" }, "Identical text.");
  const out = [];
  for (let k = 0; k < ops.length; ) {
    let e = k;
    while (e < ops.length && ops[e][0] === "=") e++;
    const run = ops.slice(k, e); // unchanged lines: keep 3 of context next to each change, fold the rest
    const head = k === 0 ? 0 : 3, tail = e === ops.length ? 0 : 3;
    if (run.length > head + tail + 1) {
      out.push(run.slice(0, head).map((r) => `  ${r[1]}\n`));
      out.push(h("span", { class: "muted" }, `  ⋯ ${run.length - head - tail} unchanged lines\n`));
      out.push(run.slice(run.length - tail).map((r) => `  ${r[1]}\n`));
    } else out.push(run.map((r) => `  ${r[1]}\n`));
    for (; e < ops.length && ops[e][0] !== "="; e++) out.push(h(ops[e][0] === "-" ? "del" : "ins", {}, `${ops[e][0]} ${ops[e][1]}`));
    k = e;
  }
  return [h("p", { class: "muted" }, `${ops.filter(([o]) => o === "-").length} line(s) removed, ${ops.filter(([o]) => o === "+").length} added`),
    h("pre", { class: "diff", "aria-label": "line diff, a to b" }, out)];
}

// ------------------------------------------------------------------------------------------------ helpers

function flatten(obj, prefix = "", out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length) flatten(v, key, out);
    else out[key] = v;
  }
  return out;
}

/** " +0.05" between two numbers (or two eval results' means), else "". */
function delta(a, b) {
  const n = (v) => (typeof v === "number" ? v : v && typeof v.mean === "number" ? v.mean : null);
  const x = n(a), y = n(b);
  return x !== null && y !== null && x !== y ? ` ${y > x ? "+" : ""}${fmt.num(y - x, 4)}` : "";
}

function show(v) {
  if (v === null || v === undefined) return h("span", { class: "muted" }, "–");
  if (typeof v === "string" && v.startsWith("sha256:")) return h("code", { title: v }, shortDigest(v));
  if (typeof v === "object") return h("code", {}, JSON.stringify(v));
  if (typeof v === "number") return fmt.num(v, 4);
  return String(v);
}

function tagList(tags) {
  const e = Object.entries(tags || {});
  if (!e.length) return h("span", { class: "muted" }, "–");
  const one = ([k, v]) => (k.startsWith("eval/") ? k : `${k}=${v.length > 40 ? v.slice(0, 39) + "…" : v}`); // eval results: see the diff
  return h("small", {}, e.map(one).join(" · "));
}

function shortDigest(d) {
  return d ? d.replace(/^sha256:/, "").slice(0, 12) : "–";
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1 << 30) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  return `${(n / (1 << 30)).toFixed(2)} GiB`;
}
