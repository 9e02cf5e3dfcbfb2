// Small accessible SVG line charts: a title, axes labels, and a text summary for screen readers.
import { h } from "./dom";

export interface Point {
  t: number;
  v: number;
}

const NS = "http://www.w3.org/2000/svg";

function svg(tag: string, attrs: Record<string, string | number>): SVGElement {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

export interface Series {
  label: string;
  points: Point[];
}

export interface ChartOptions {
  // Label the axis ends with dates only (daily series) instead of date and time.
  days?: boolean;
}

export function lineChart(title: string, points: Point[], options: ChartOptions = {}): HTMLElement {
  return linesChart(title, [{ label: title, points }], options);
}

// One chart of one or more series over the same time axis; a legend when there are several.
export function linesChart(title: string, series: Series[], options: ChartOptions = {}): HTMLElement {
  const W = 320;
  const H = 140;
  const pad = 28;
  const figure = h("figure", { class: "chart" }, h("figcaption", {}, title));
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    figure.append(h("p", { class: "muted" }, "No data yet."));
    return figure;
  }
  const t0 = Math.min(...all.map((p) => p.t));
  const t1 = Math.max(...all.map((p) => p.t), t0 + 1);
  const vmax = Math.max(1, ...all.map((p) => p.v));
  const x = (t: number): number => pad + ((t - t0) / (t1 - t0)) * (W - pad - 8);
  const y = (v: number): number => H - pad - (v / vmax) * (H - pad - 8);
  const summary = series.map((s) => `${s.label}: latest ${s.points.length ? s.points[s.points.length - 1].v : 0}`).join(", ");
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: ${all.length} points, ${summary}, highest ${vmax}` });
  chart.append(svg("line", { x1: pad, y1: H - pad, x2: W - 8, y2: H - pad, class: "axis" }));
  chart.append(svg("line", { x1: pad, y1: 8, x2: pad, y2: H - pad, class: "axis" }));
  const label = (text: string, lx: number, ly: number, anchor: string): void => {
    const el = svg("text", { x: lx, y: ly, "text-anchor": anchor, class: "chart-label" });
    el.textContent = text;
    chart.append(el);
  };
  label(String(vmax), pad - 4, 14, "end");
  label("0", pad - 4, H - pad, "end");
  const start = options.days ? new Date(t0).toLocaleDateString() : new Date(t0).toLocaleString([], { dateStyle: "short", timeStyle: "short" });
  const end = options.days ? new Date(t1).toLocaleDateString() : new Date(t1).toLocaleTimeString([], { timeStyle: "short" });
  label(start, pad, H - 8, "start");
  label(end, W - 8, H - 8, "end");
  series.forEach((s, n) => {
    if (s.points.length === 0) return;
    const d = s.points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    chart.append(svg("path", { d, class: n ? `line line-${n + 1}` : "line" }));
  });
  figure.append(chart);
  if (series.length > 1) {
    figure.append(h("p", { class: "legend" }, ...series.map((s, n) => h("span", { class: n ? `key key-${n + 1}` : "key" }, s.label))));
  }
  return figure;
}
