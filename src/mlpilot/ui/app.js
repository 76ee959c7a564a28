// mlpilot dashboard: a hash-routed single page over the control API. No framework, no build step, no CDN.
// Each page module exports `render(ctx)`; it builds its DOM with `h()` and may return a refresh function that the
// router calls every POLL_MS while the page is shown (live updates by polling).

export const POLL_MS = 3000;

/** Build an element: h("a", {href: "#/"}, "text", child, ...). `on*` props attach listeners; false/null skip. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "html") el.innerHTML = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export class ApiError extends Error {
  constructor(status, message, kind) {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}

/** Call the control API; JSON in and out; a non-2xx answer throws ApiError with the server's message. */
export async function api(path, { method = "GET", body, params } = {}) {
  let url = path.startsWith("/") ? path : `/api/v1/${path}`;
  if (params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const s = q.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const init = { method, headers: { accept: "application/json", "x-mlpilot-actor": actor() } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const key = localStorage.getItem("mlpilot-api-key");
  if (key) init.headers.authorization = `Bearer ${key}`;
  const r = await fetch(url, init);
  if (r.status === 401 && askForKey(key)) return api(path, { method, body, params });
  if (r.status === 204) return null;
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: text };
  }
  if (!r.ok) {
    let msg = data && (data.error || data.detail) ? data.error || data.detail : `HTTP ${r.status}`;
    if (Array.isArray(msg)) msg = msg.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
    throw new ApiError(r.status, typeof msg === "string" ? msg : JSON.stringify(msg), data && data.kind);
  }
  return data;
}

/** Auth is on (docs/security.md): ask once for an API key (kept in this browser's localStorage); true to retry. */
function askForKey(rejected) {
  const entered = window.prompt(
    (rejected ? "That API key was refused. " : "This server needs an API key. ") +
      "Paste a key with the read scope (deploy or admin to change things): mlpilot auth create-key NAME --scopes read",
  );
  if (!entered || !entered.trim()) return false;
  localStorage.setItem("mlpilot-api-key", entered.trim());
  return true;
}

export function actor() {
  return localStorage.getItem("mlpilot-actor") || "dashboard";
}

/** A transient message at the top of the page (role=status); errors stay until the next message. */
export function flash(message, kind = "ok") {
  const el = document.getElementById("flash");
  fill(el, h("div", { class: `flash ${kind}` }, message));
  if (kind === "ok") setTimeout(() => el.firstChild && el.firstChild.textContent === message && fill(el), 4000);
}

// ------------------------------------------------------------------------------------------------ formatting

export const fmt = {
  num(v, digits = 1) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    return Number.isInteger(v) ? String(v) : v.toFixed(digits);
  },
  pct(v, digits = 1) {
    return v === null || v === undefined || Number.isNaN(v) ? "–" : `${(100 * v).toFixed(digits)}%`;
  },
  ms(v) {
    return v === null || v === undefined ? "–" : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(1)} ms`;
  },
  time(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return d.toLocaleString(undefined, { hour12: false });
  },
  ago(iso) {
    if (!iso) return "–";
    const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 60) return `${Math.max(s, 0)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  },
  json(v) {
    return JSON.stringify(v, null, 1);
  },
};

export function badge(text, kind) {
  return h("span", { class: `badge ${kind || text}` }, text);
}

/** A table: columns [{label, get(row) -> node|text, class}], rows; `onRow` makes rows keyboard-activatable. */
export function table(columns, rows, { onRow, empty = "Nothing here yet.", caption } = {}) {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)));
  const body = rows.map((r) => {
    const tr = h("tr", {}, columns.map((c) => h("td", { class: c.class, "data-label": c.label }, c.get(r))));
    if (onRow) {
      tr.tabIndex = 0;
      tr.classList.add("clickable");
      tr.addEventListener("click", () => onRow(r));
      tr.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), onRow(r)));
    }
    return tr;
  });
  return h("div", { class: "table-wrap" }, h("table", {}, caption && h("caption", {}, caption), h("thead", {}, head), h("tbody", {}, body)));
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

/** A labelled form field. */
export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint && h("small", { class: "muted" }, hint));
}

/** Run `fn` for a button: disables it meanwhile, shows the server's message on failure. */
export async function act(button, fn, done) {
  button.disabled = true;
  try {
    const out = await fn();
    if (done) flash(typeof done === "function" ? done(out) : done, "ok");
    await refreshNow();
    return out;
  } catch (e) {
    flash(e.message || String(e), "error");
    return undefined;
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------------------------------------ router

const ROUTES = [
  [/^#?\/?$/, "overview", () => import("./pages/overview.js")],
  [/^#\/deployments\/([^/]+)$/, "overview", () => import("./pages/deployment.js")],
  [/^#\/registry$/, "registry", () => import("./pages/registry.js")],
  [/^#\/registry\/([^/]+)$/, "registry", () => import("./pages/registry.js")],
  [/^#\/incidents$/, "incidents", () => import("./pages/incidents.js")],
  [/^#\/incidents\/(\d+)$/, "incidents", () => import("./pages/incidents.js")],
  [/^#\/experiments$/, "experiments", () => import("./pages/experiments.js")],
  [/^#\/requests$/, "requests", () => import("./pages/requests.js")],
];

let timer = null;
let refresher = null;
let generation = 0;

async function refreshNow() {
  if (!refresher) return;
  const gen = generation;
  try {
    await refresher();
    if (gen === generation) setLive(true);
  } catch (e) {
    if (gen === generation) setLive(false, e.message || String(e));
  }
}

function setLive(ok, why) {
  const el = document.getElementById("live");
  el.textContent = ok ? `live · ${new Date().toLocaleTimeString(undefined, { hour12: false })}` : `offline: ${why}`;
  el.className = `live ${ok ? "ok" : "bad"}`;
}

async function route() {
  generation += 1;
  const gen = generation;
  clearInterval(timer);
  refresher = null;
  const hash = location.hash || "#/";
  const [path, query] = hash.split("?");
  const match = ROUTES.map(([re, nav, load]) => [path.match(re), nav, load]).find(([m]) => m);
  const main = document.getElementById("main");
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.toggleAttribute("aria-current", match && a.dataset.nav === match[1]);
  }
  if (!match) {
    fill(main, h("h1", {}, "Not found"), h("p", {}, `No page ${hash}. `, h("a", { href: "#/" }, "Overview")));
    return;
  }
  const [m, , load] = match;
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  try {
    const page = await load();
    if (gen !== generation) return;
    fill(main);
    const refresh = await page.render({ main, args: m.slice(1).map(decodeURIComponent), params });
    if (gen !== generation) return;
    if (typeof refresh === "function") {
      refresher = refresh;
      await refreshNow();
      timer = setInterval(refreshNow, POLL_MS);
    } else {
      setLive(true);
    }
  } catch (e) {
    if (gen !== generation) return;
    fill(main, h("h1", {}, "Could not load the page"), h("p", { class: "error" }, e.message || String(e)));
  }
}

/** Change the query string of the current page (filters) without a full navigation. */
export function setParams(params) {
  const [path] = (location.hash || "#/").split("?");
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  location.hash = s ? `${path}?${s}` : path;
}

window.addEventListener("hashchange", route);
route();
