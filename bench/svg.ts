/** Hand-written SVG charts (no dependencies): line/scatter charts with error bars, grouped bars, reference lines and bands. */

export interface Point {
  x: number;
  y: number;
  /** Error bar (absolute y values). */
  lo?: number;
  hi?: number;
  label?: string;
}

export interface Series {
  name: string;
  color: string;
  points: Point[];
  dash?: string;
  /** Draw the connecting line (default true). */
  line?: boolean;
  marker?: "circle" | "square" | "none";
}

export interface RefLine {
  label: string;
  color: string;
  y: number;
  /** With y2: a shaded band from y to y2. */
  y2?: number;
  dash?: string;
}

const W = 760;
const H = 440;
const M = { l: 70, r: 220, t: 40, b: 56 };

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** "Nice" axis ticks covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, n = 6): number[] {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toFixed(10)));
  return out;
}

function fmt(v: number): string {
  if (Math.abs(v) >= 1000) return v.toFixed(0);
  if (Math.abs(v) >= 10) return String(Number(v.toFixed(1)));
  return String(Number(v.toPrecision(3)));
}

function frame(title: string, xLabel: string, yLabel: string, body: string[], legend: Array<{ name: string; color: string; dash?: string; band?: boolean }>, note?: string): string {
  const pw = W - M.l - M.r;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${M.l + pw / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`);
  out.push(...body);
  out.push(`<text x="${M.l + pw / 2}" y="${H - 14}" text-anchor="middle">${esc(xLabel)}</text>`);
  out.push(`<text transform="translate(16 ${M.t + (H - M.t - M.b) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  legend.forEach((l, i) => {
    const y = M.t + 10 + i * 20;
    const x = W - M.r + 16;
    if (l.band) out.push(`<rect x="${x}" y="${y - 6}" width="26" height="12" fill="${l.color}" fill-opacity="0.18" stroke="${l.color}"/>`);
    else out.push(`<line x1="${x}" y1="${y}" x2="${x + 26}" y2="${y}" stroke="${l.color}" stroke-width="2.5"${l.dash ? ` stroke-dasharray="${l.dash}"` : ""}/>`);
    out.push(`<text x="${x + 32}" y="${y + 4}">${esc(l.name)}</text>`);
  });
  if (note) out.push(`<text x="${M.l}" y="${H - 2}" font-size="10" fill="#555">${esc(note)}</text>`);
  out.push("</svg>");
  return out.join("\n") + "\n";
}

function refShapes(refs: RefLine[], sx0: number, sx1: number, sy: (v: number) => number): string[] {
  const out: string[] = [];
  for (const r of refs) {
    if (r.y2 !== undefined) {
      const a = sy(Math.max(r.y, r.y2));
      const b = sy(Math.min(r.y, r.y2));
      out.push(`<rect x="${sx0}" y="${a}" width="${sx1 - sx0}" height="${Math.max(1, b - a)}" fill="${r.color}" fill-opacity="0.15"/>`);
    } else {
      out.push(`<line x1="${sx0}" y1="${sy(r.y)}" x2="${sx1}" y2="${sy(r.y)}" stroke="${r.color}" stroke-width="1.5" stroke-dasharray="${r.dash ?? "6 4"}"/>`);
    }
  }
  return out;
}

export interface LineChartOpts {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  refs?: RefLine[];
  xTicks?: number[];
  yMin?: number;
  note?: string;
}

export function lineChart(o: LineChartOpts): string {
  const refs = o.refs ?? [];
  const pts = o.series.flatMap((s) => s.points);
  const xs = pts.map((p) => p.x).concat(o.xTicks ?? []);
  const ys = pts.flatMap((p) => [p.y, p.hi ?? p.y]).concat(refs.flatMap((r) => [r.y, r.y2 ?? r.y]));
  let x0 = Math.min(...xs);
  let x1 = Math.max(...xs);
  if (!(x1 > x0)) {
    x0 -= 1;
    x1 += 1;
  }
  const pad = (x1 - x0) * 0.06;
  x0 -= pad;
  x1 += pad;
  const yTicks = niceTicks(o.yMin ?? 0, Math.max(...ys, 1e-9) * 1.05);
  const y0 = yTicks[0];
  const y1 = yTicks[yTicks.length - 1];
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  const sx = (v: number) => M.l + ((v - x0) / (x1 - x0)) * pw;
  const sy = (v: number) => M.t + ph - ((v - y0) / (y1 - y0)) * ph;
  const body: string[] = [];
  for (const t of yTicks) {
    body.push(`<line x1="${M.l}" y1="${sy(t)}" x2="${M.l + pw}" y2="${sy(t)}" stroke="#e5e5e5"/>`);
    body.push(`<text x="${M.l - 6}" y="${sy(t) + 4}" text-anchor="end">${fmt(t)}</text>`);
  }
  const xt = o.xTicks ?? niceTicks(x0, x1);
  for (const t of xt) {
    if (t < x0 || t > x1) continue;
    body.push(`<line x1="${sx(t)}" y1="${M.t + ph}" x2="${sx(t)}" y2="${M.t + ph + 5}" stroke="#333"/>`);
    body.push(`<text x="${sx(t)}" y="${M.t + ph + 18}" text-anchor="middle">${fmt(t)}</text>`);
  }
  body.push(...refShapes(refs, M.l, M.l + pw, sy));
  body.push(`<rect x="${M.l}" y="${M.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  for (const s of o.series) {
    const p = [...s.points].sort((a, b) => a.x - b.x);
    if (s.line !== false && p.length > 1) {
      body.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""} points="${p.map((q) => `${sx(q.x).toFixed(1)},${sy(q.y).toFixed(1)}`).join(" ")}"/>`);
    }
    for (const q of p) {
      if (q.lo !== undefined && q.hi !== undefined && q.hi > q.lo) {
        body.push(`<line x1="${sx(q.x)}" y1="${sy(q.lo)}" x2="${sx(q.x)}" y2="${sy(q.hi)}" stroke="${s.color}" stroke-width="1.2"/>`);
        for (const v of [q.lo, q.hi]) body.push(`<line x1="${sx(q.x) - 4}" y1="${sy(v)}" x2="${sx(q.x) + 4}" y2="${sy(v)}" stroke="${s.color}" stroke-width="1.2"/>`);
      }
      if (s.marker === "square") body.push(`<rect x="${sx(q.x) - 3.5}" y="${sy(q.y) - 3.5}" width="7" height="7" fill="${s.color}"/>`);
      else if (s.marker !== "none") body.push(`<circle cx="${sx(q.x)}" cy="${sy(q.y)}" r="3.5" fill="${s.color}"/>`);
      if (q.label) body.push(`<text x="${sx(q.x) + 6}" y="${sy(q.y) - 6}" font-size="11" fill="${s.color}">${esc(q.label)}</text>`);
    }
  }
  const legend = [...o.series.map((s) => ({ name: s.name, color: s.color, dash: s.dash })), ...refs.map((r) => ({ name: r.label, color: r.color, dash: r.dash ?? "6 4", band: r.y2 !== undefined }))];
  return frame(o.title, o.xLabel, o.yLabel, body, legend, o.note);
}

export interface BarChartOpts {
  title: string;
  xLabel: string;
  yLabel: string;
  groups: string[];
  bars: Array<{ name: string; color: string; values: Array<number | undefined>; lo?: Array<number | undefined>; hi?: Array<number | undefined> }>;
  refs?: RefLine[];
  note?: string;
}

export function barChart(o: BarChartOpts): string {
  const refs = o.refs ?? [];
  const ys = o.bars.flatMap((b) => [...b.values, ...(b.hi ?? [])]).filter((v): v is number => v !== undefined && Number.isFinite(v));
  ys.push(...refs.flatMap((r) => [r.y, r.y2 ?? r.y]));
  const yTicks = niceTicks(0, Math.max(...ys, 1e-9) * 1.05);
  const y1 = yTicks[yTicks.length - 1];
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  const sy = (v: number) => M.t + ph - (v / y1) * ph;
  const body: string[] = [];
  for (const t of yTicks) {
    body.push(`<line x1="${M.l}" y1="${sy(t)}" x2="${M.l + pw}" y2="${sy(t)}" stroke="#e5e5e5"/>`);
    body.push(`<text x="${M.l - 6}" y="${sy(t) + 4}" text-anchor="end">${fmt(t)}</text>`);
  }
  const gw = pw / Math.max(1, o.groups.length);
  const bw = (gw * 0.75) / Math.max(1, o.bars.length);
  o.groups.forEach((g, gi) => {
    body.push(`<text x="${M.l + gw * gi + gw / 2}" y="${M.t + ph + 18}" text-anchor="middle">${esc(g)}</text>`);
    o.bars.forEach((b, bi) => {
      const v = b.values[gi];
      if (v === undefined || !Number.isFinite(v)) return;
      const x = M.l + gw * gi + gw * 0.125 + bw * bi;
      body.push(`<rect x="${x}" y="${sy(v)}" width="${bw - 2}" height="${M.t + ph - sy(v)}" fill="${b.color}"/>`);
      body.push(`<text x="${x + (bw - 2) / 2}" y="${sy(v) - 4}" text-anchor="middle" font-size="10">${fmt(v)}</text>`);
      const lo = b.lo?.[gi];
      const hi = b.hi?.[gi];
      if (lo !== undefined && hi !== undefined && hi > lo) {
        const cx = x + (bw - 2) / 2;
        body.push(`<line x1="${cx}" y1="${sy(lo)}" x2="${cx}" y2="${sy(hi)}" stroke="#222"/>`);
      }
    });
  });
  body.push(...refShapes(refs, M.l, M.l + pw, sy));
  body.push(`<rect x="${M.l}" y="${M.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  const legend = [...o.bars.map((b) => ({ name: b.name, color: b.color, band: true })), ...refs.map((r) => ({ name: r.label, color: r.color, dash: r.dash ?? "6 4", band: r.y2 !== undefined }))];
  return frame(o.title, o.xLabel, o.yLabel, body, legend, o.note);
}
