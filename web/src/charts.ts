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

export function lineChart(title: string, points: Point[]): HTMLElement {
  const W = 320;
  const H = 140;
  const pad = 28;
  const figure = h("figure", { class: "chart" }, h("figcaption", {}, title));
  if (points.length === 0) {
    figure.append(h("p", { class: "muted" }, "No data yet."));
    return figure;
  }
  const t0 = points[0].t;
  const t1 = Math.max(points[points.length - 1].t, t0 + 1);
  const vmax = Math.max(1, ...points.map((p) => p.v));
  const x = (t: number): number => pad + ((t - t0) / (t1 - t0)) * (W - pad - 8);
  const y = (v: number): number => H - pad - (v / vmax) * (H - pad - 8);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: ${points.length} points, latest ${points[points.length - 1].v}, highest ${vmax}` });
  chart.append(svg("line", { x1: pad, y1: H - pad, x2: W - 8, y2: H - pad, class: "axis" }));
  chart.append(svg("line", { x1: pad, y1: 8, x2: pad, y2: H - pad, class: "axis" }));
  const label = (text: string, lx: number, ly: number, anchor: string): void => {
    const el = svg("text", { x: lx, y: ly, "text-anchor": anchor, class: "chart-label" });
    el.textContent = text;
    chart.append(el);
  };
  label(String(vmax), pad - 4, 14, "end");
  label("0", pad - 4, H - pad, "end");
  label(new Date(t0).toLocaleString([], { dateStyle: "short", timeStyle: "short" }), pad, H - 8, "start");
  label(new Date(t1).toLocaleTimeString([], { timeStyle: "short" }), W - 8, H - 8, "end");
  const d = points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
  chart.append(svg("path", { d, class: "line" }));
  figure.append(chart);
  return figure;
}
