// Two small inline-SVG drawings (no library: a bar chart and a day timeline are a few
// dozen lines, and the page must not fetch anything): counts per bucket as bars, and
// a subject's days as rows with a mark per sighting and a bar per stay.

import { timeOfDay, DAY_MS, fmt } from './time.js';

const NS = 'http://www.w3.org/2000/svg';
export const PALETTE = ['#1d4e89', '#d1495b', '#00798c', '#edae49', '#66a182', '#8d6a9f', '#2e4057', '#c36f09', '#5f0f40', '#3d5a80'];

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** A colour per key, in order of first appearance. */
export function colours(keys) {
  const out = new Map();
  for (const k of keys) if (!out.has(k)) out.set(k, PALETTE[out.size % PALETTE.length]);
  return out;
}

/** Stacked bars: `series` is [{bucket, key, count}]; one bar per bucket, a segment
 * per key. */
export function bars(series, { width = 900, height = 240, label = (b) => b } = {}) {
  const buckets = [...new Set(series.map((r) => r.bucket))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const keyColour = colours(series.map((r) => r.key));
  const totals = new Map(buckets.map((b) => [b, 0]));
  for (const r of series) totals.set(r.bucket, totals.get(r.bucket) + r.count);
  const max = Math.max(1, ...totals.values());
  const left = 56, bottom = 34, top = 8;
  const plotH = height - bottom - top;
  const step = (width - left - 8) / Math.max(1, buckets.length);
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img', class: 'bars' });
  for (let i = 0; i <= 4; i++) {
    const y = top + plotH - (plotH * i) / 4;
    svg.append(s('line', { x1: left, x2: width - 4, y1: y, y2: y, stroke: '#e3e7eb' }));
    svg.append(s('text', { x: left - 4, y: y + 4, 'text-anchor': 'end' }, Math.round((max * i) / 4).toLocaleString()));
  }
  const stacked = new Map(buckets.map((b) => [b, 0]));
  buckets.forEach((b, i) => {
    for (const r of series.filter((x) => x.bucket === b)) {
      const h = (plotH * r.count) / max;
      const y = top + plotH - stacked.get(b) - h;
      stacked.set(b, stacked.get(b) + h);
      svg.append(s('rect', { x: left + i * step + 1, y, width: Math.max(1, step - 2), height: h, fill: keyColour.get(r.key) },
        s('title', {}, `${label(b)} ${r.key}: ${r.count}`)));
    }
    const every = Math.ceil(buckets.length / 12);
    if (i % every === 0) svg.append(s('text', { x: left + i * step + step / 2, y: height - bottom + 14, 'text-anchor': 'middle' }, label(b)));
  });
  return { svg, keyColour };
}

/** A subject's days: one row per day, x the time of day; a tick per sighting coloured
 * by its community, a bar per stay. `days` is [{date, events: [{ts, community}],
 * stays: [{community, in, out}]}]. */
export function timeline(days, colourOf, { width = 900 } = {}) {
  const row = 18, left = 84, top = 16;
  const height = top + days.length * row + 4;
  const plotW = width - left - 8;
  const x = (ts) => left + (plotW * timeOfDay(ts)) / DAY_MS;
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img', class: 'timeline' });
  for (let hour = 0; hour <= 24; hour += 3) {
    const gx = left + (plotW * hour) / 24;
    svg.append(s('line', { x1: gx, x2: gx, y1: top - 4, y2: height, stroke: '#e3e7eb' }));
    svg.append(s('text', { x: gx, y: 11, 'text-anchor': 'middle' }, `${hour}:00`));
  }
  days.forEach((d, i) => {
    const y = top + i * row;
    svg.append(s('text', { x: 4, y: y + 12 }, d.date));
    for (const st of d.stays) {
      const x1 = x(st.in), x2 = st.out && fmt(st.out).slice(0, 10) === d.date ? x(st.out) : left + plotW;
      svg.append(s('rect', { x: x1, y: y + 5, width: Math.max(2, x2 - x1), height: 8, rx: 2, fill: colourOf(st.community), opacity: 0.35 },
        s('title', {}, `${st.community} ${fmt(st.in)} – ${fmt(st.out)}`)));
    }
    for (const e of d.events) {
      svg.append(s('rect', { x: x(e.ts) - 1, y: y + 2, width: 2, height: 14, fill: colourOf(e.community), class: 'mark' },
        s('title', {}, `${fmt(e.ts)} ${e.community} ${e.device || ''}`)));
    }
  });
  return svg;
}
