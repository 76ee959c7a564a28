// Small SVG charts (no library): time series lines, horizontal bars, a traffic split bar. Every chart has a
// <title> and an aria-label, and a table fallback is up to the page.

const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * Lines over time. series: [{name, points: [[Date|iso|number, value|null], ...]}].
 * opts: {title, yFormat(v), height, yMax}
 */
export function lineChart(series, opts = {}) {
  const W = 640, H = opts.height || 180, L = 52, R = 10, T = 10, B = 26;
  const pts = series.flatMap((x) => x.points.filter((p) => p[1] !== null && p[1] !== undefined && !Number.isNaN(p[1])));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": opts.title || "chart", preserveAspectRatio: "none" });
  svg.append(s("title", {}, opts.title || "chart"));
  if (!pts.length) {
    svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "muted" }, "no data in this window"));
    return wrap(svg, series, opts);
  }
  const t = (v) => (v instanceof Date ? v.getTime() : typeof v === "string" ? Date.parse(v) : v);
  const xs = pts.map((p) => t(p[0]));
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  if (opts.xMin !== undefined) x0 = t(opts.xMin);
  if (opts.xMax !== undefined) x1 = t(opts.xMax);
  if (x1 === x0) x1 = x0 + 1;
  const y1 = opts.yMax !== undefined ? opts.yMax : niceMax(Math.max(...pts.map((p) => p[1])));
  const X = (v) => L + ((t(v) - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => T + (1 - v / y1) * (H - T - B);
  const yFmt = opts.yFormat || ((v) => (v === 0 ? "0" : Math.abs(v) < 0.01 ? v.toExponential(1) : String(+v.toFixed(3))));
  for (let i = 0; i <= 4; i++) {
    const v = (y1 * i) / 4;
    svg.append(s("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: "grid" }));
    svg.append(s("text", { x: L - 4, y: Y(v) + 4, "text-anchor": "end", class: "axis" }, yFmt(v)));
  }
  for (let i = 0; i <= 3; i++) {
    const v = x0 + ((x1 - x0) * i) / 3;
    const label = opts.xFormat ? opts.xFormat(v) : new Date(v).toLocaleTimeString(undefined, { hour12: false, hour: "2-digit", minute: "2-digit" });
    svg.append(s("text", { x: X(v), y: H - 6, "text-anchor": i === 0 ? "start" : i === 3 ? "end" : "middle", class: "axis" }, label));
  }
  series.forEach((ser, i) => {
    const color = ser.color || PALETTE[i % PALETTE.length];
    let d = "";
    let pen = false;
    for (const [x, y] of ser.points) {
      if (y === null || y === undefined || Number.isNaN(y)) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)} `;
      pen = true;
    }
    svg.append(s("path", { d, fill: "none", stroke: color, "stroke-width": 2, "vector-effect": "non-scaling-stroke" }, s("title", {}, ser.name)));
    if (ser.points.length <= 60) {
      for (const [x, y] of ser.points) if (y !== null && y !== undefined) svg.append(s("circle", { cx: X(x), cy: Y(y), r: 2.5, fill: color }, s("title", {}, `${ser.name}: ${yFmt(y)}`)));
    }
  });
  return wrap(svg, series, opts);
}

function wrap(svg, series, opts) {
  const fig = document.createElement("figure");
  fig.className = "chart-box";
  if (opts.title) {
    const cap = document.createElement("figcaption");
    cap.textContent = opts.title;
    fig.append(cap);
  }
  fig.append(svg);
  if (series.length > 1 || opts.legend) {
    const legend = document.createElement("div");
    legend.className = "legend";
    series.forEach((ser, i) => {
      const item = document.createElement("span");
      item.innerHTML = `<i style="background:${ser.color || PALETTE[i % PALETTE.length]}"></i>`;
      item.append(document.createTextNode(ser.name));
      legend.append(item);
    });
    fig.append(legend);
  }
  return fig;
}

/** Horizontal bars: items [{label, value, color?, title?}]; opts {title, format, max}. */
export function barChart(items, opts = {}) {
  const W = 640, row = 24, L = 190, R = 70;
  const H = Math.max(row * items.length + 8, 30);
  const max = opts.max || niceMax(Math.max(...items.map((i) => Math.abs(i.value)), 0));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart bars", role: "img", "aria-label": opts.title || "bars" });
  svg.append(s("title", {}, opts.title || "bars"));
  const fmt = opts.format || ((v) => String(+v.toFixed(3)));
  items.forEach((it, i) => {
    const y = 4 + i * row;
    const w = Math.max(((W - L - R) * Math.min(Math.abs(it.value), max)) / max, 1);
    svg.append(s("text", { x: L - 6, y: y + 15, "text-anchor": "end", class: "axis" }, it.label.length > 28 ? it.label.slice(0, 27) + "…" : it.label));
    svg.append(s("rect", { x: L, y: y + 3, width: w, height: row - 8, rx: 3, fill: it.color || PALETTE[0] }, s("title", {}, it.title || `${it.label}: ${fmt(it.value)}`)));
    svg.append(s("text", { x: L + w + 4, y: y + 15, class: "axis" }, fmt(it.value)));
  });
  return wrap(svg, [], opts);
}

/** The traffic split as one stacked bar with a legend. traffic: {variant: weight}. */
export function splitBar(traffic, shadows = []) {
  const box = document.createElement("div");
  box.className = "split";
  box.setAttribute("role", "img");
  const entries = Object.entries(traffic).filter(([, w]) => w > 0);
  box.setAttribute("aria-label", "traffic: " + entries.map(([k, w]) => `${k} ${w}%`).join(", "));
  entries.forEach(([name, w], i) => {
    const seg = document.createElement("span");
    seg.style.width = `${w}%`;
    seg.style.background = PALETTE[i % PALETTE.length];
    seg.title = `${name}: ${w}%`;
    seg.textContent = w >= 12 ? `${name} ${w}%` : "";
    box.append(seg);
  });
  if (shadows.length) {
    const note = document.createElement("small");
    note.className = "muted";
    note.textContent = ` shadows: ${shadows.join(", ")}`;
    const outer = document.createElement("div");
    outer.append(box, note);
    return outer;
  }
  return box;
}

/** Grouped vertical bars over shared bins: series [{name, values}] (shares 0..1); opts {title}. */
export function histogram(bins, series, opts = {}) {
  const W = 640, H = 200, L = 40, R = 8, T = 8, B = 46;
  const max = niceMax(Math.max(...series.flatMap((x) => x.values), 0));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": opts.title || "histogram" });
  svg.append(s("title", {}, opts.title || "histogram"));
  const slot = (W - L - R) / Math.max(bins.length, 1);
  const bw = (slot * 0.8) / Math.max(series.length, 1);
  const Y = (v) => T + (1 - v / max) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(s("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: "grid" }));
    svg.append(s("text", { x: L - 4, y: Y(v) + 4, "text-anchor": "end", class: "axis" }, `${Math.round(v * 100)}%`));
  }
  bins.forEach((label, i) => {
    const x0 = L + i * slot + slot * 0.1;
    series.forEach((ser, j) => {
      const v = ser.values[i] || 0;
      svg.append(s("rect", { x: x0 + j * bw, y: Y(v), width: Math.max(bw - 1, 1), height: Math.max(Y(0) - Y(v), 0), fill: ser.color || PALETTE[j % PALETTE.length] }, s("title", {}, `${ser.name}, ${label}: ${(100 * v).toFixed(1)}%`)));
    });
    if (bins.length <= 16) {
      const text = String(label).length > 12 ? String(label).slice(0, 11) + "…" : String(label);
      svg.append(s("text", { x: x0 + slot * 0.4, y: H - B + 14 + (i % 2) * 12, "text-anchor": "middle", class: "axis" }, text));
    }
  });
  return wrap(svg, series, { ...opts, legend: true });
}
