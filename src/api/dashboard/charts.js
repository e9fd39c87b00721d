// Line charts drawn as inline SVG: linear or base-10 logarithmic y axis, several series, dashed
// reference lines. No library; the numbers plotted are exactly the ones the API returned.

const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs ?? {})) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, content, attrs) {
  const t = el("text", { x, y, ...attrs }, parent);
  t.textContent = content;
  return t;
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
  return ticks;
}

function formatTick(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(1);
  return String(+v.toPrecision(4));
}

/**
 * Draws a chart into `container` (replacing what was there).
 *
 * options: series [{name, color, points: [[x, y], …]}] (non-finite y breaks the line);
 * xLabel, yLabel; log: y values are log10 of the quantity and the axis is labelled in powers of 10;
 * refs [{y, label}] dashed horizontal lines (in the same units as y); marks [{x, label}] dashed
 * vertical lines (e.g. the epoch early stopping chose); width, height.
 */
export function lineChart(container, options) {
  const width = options.width ?? 560;
  const height = options.height ?? 260;
  const m = { top: 14, right: 16, bottom: 40, left: 62 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": options.title ?? options.yLabel ?? "chart" });
  if (options.title) el("title", {}, svg).textContent = options.title;

  const finite = options.series.flatMap((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  if (finite.length === 0) {
    text(svg, width / 2, height / 2, options.empty ?? "no data", { "text-anchor": "middle", class: "no-data" });
    container.replaceChildren(svg);
    return svg;
  }
  const ys = finite.map((p) => p[1]).concat((options.refs ?? []).map((r) => r.y));
  let [xlo, xhi] = [Math.min(...finite.map((p) => p[0])), Math.max(...finite.map((p) => p[0]))];
  let [ylo, yhi] = [Math.min(...ys), Math.max(...ys)];
  if (xhi === xlo) { xlo -= 1; xhi += 1; }
  if (yhi === ylo) { const d = Math.abs(ylo) * 0.1 || 1; ylo -= d; yhi += d; }
  const pad = (yhi - ylo) * 0.05;
  ylo -= pad; yhi += pad;
  const px = (x) => m.left + ((x - xlo) / (xhi - xlo)) * w;
  const py = (y) => m.top + h - ((y - ylo) / (yhi - ylo)) * h;

  // Grid and y ticks: powers of ten on a log axis, round numbers otherwise.
  const yTicks = options.log
    ? niceTicks(ylo, yhi, 6).filter((t) => Number.isInteger(t))
    : niceTicks(ylo, yhi, 5);
  const axis = el("g", { class: "axis" }, svg);
  for (const t of yTicks) {
    el("line", { x1: m.left, x2: m.left + w, y1: py(t), y2: py(t), class: "grid-line" }, axis);
    text(axis, m.left - 6, py(t) + 4, options.log ? `1e${t}` : formatTick(t), { "text-anchor": "end", class: "tick-label" });
  }
  for (const t of niceTicks(xlo, xhi, 8).filter((t) => !options.integerX || Number.isInteger(t))) {
    el("line", { x1: px(t), x2: px(t), y1: m.top + h, y2: m.top + h + 4 }, axis);
    text(axis, px(t), m.top + h + 16, formatTick(t), { "text-anchor": "middle", class: "tick-label" });
  }
  el("path", { d: `M${m.left},${m.top} V${m.top + h} H${m.left + w}`, fill: "none" }, axis);
  if (options.xLabel) text(axis, m.left + w / 2, height - 6, options.xLabel, { "text-anchor": "middle", class: "axis-label" });
  if (options.yLabel) {
    text(axis, 14, m.top + h / 2, options.yLabel, { "text-anchor": "middle", class: "axis-label", transform: `rotate(-90 14 ${m.top + h / 2})` });
  }
  for (const r of options.refs ?? []) {
    el("line", { x1: m.left, x2: m.left + w, y1: py(r.y), y2: py(r.y), class: "ref-line" }, svg);
    if (r.label) text(svg, m.left + w - 4, py(r.y) - 4, r.label, { "text-anchor": "end", class: "tick-label" });
  }

  for (const mk of options.marks ?? []) {
    if (!(mk.x >= xlo && mk.x <= xhi)) continue;
    const g = el("g", { class: "mark", "data-mark": mk.name ?? "", "data-x": mk.x }, svg);
    el("line", { x1: px(mk.x), x2: px(mk.x), y1: m.top, y2: m.top + h, class: "ref-line" }, g);
    if (mk.label) text(g, px(mk.x) + 4, m.top + 10, mk.label, { class: "tick-label" });
  }

  // Series: one polyline per unbroken run of finite points.
  for (const s of options.series) {
    const g = el("g", { "data-series": s.name, "data-n": s.points.filter(([, y]) => Number.isFinite(y)).length }, svg);
    let run = [];
    const flush = () => {
      if (run.length === 1) el("circle", { cx: run[0][0], cy: run[0][1], r: 2.5, fill: s.color }, g);
      if (run.length > 1) {
        el("polyline", { points: run.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "), stroke: s.color, class: "series" }, g);
      }
      run = [];
    };
    for (const [x, y] of s.points) {
      if (Number.isFinite(x) && Number.isFinite(y)) run.push([px(x), py(y)]);
      else flush();
    }
    flush();
  }
  if (options.series.length > 1) {
    const legend = el("g", { class: "legend" }, svg);
    options.series.forEach((s, i) => {
      const y = m.top + 8 + i * 15;
      el("line", { x1: m.left + 10, x2: m.left + 28, y1: y, y2: y, stroke: s.color, "stroke-width": 2 }, legend);
      text(legend, m.left + 33, y + 4, s.name, {});
    });
  }
  container.replaceChildren(svg);
  return svg;
}
