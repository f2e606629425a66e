// A subject's days as inline SVG: one row per day, x the time of day, a tick per
// sighting coloured by its community and a bar per stay. Drawn by hand on purpose:
// uPlot (the console's chart library, `chart.js`) plots series of y over x; a row of
// ticks and interval bars per day is not such a series, and uPlot's own "timeline"
// is demo code to copy, not part of the library (ARCHITECTURE.md says why this stays).

import { timeOfDay, DAY_MS, fmt } from './time.js';

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** `days` is [{date, events: [{ts, community}], stays: [{community, in, out}]}]. */
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
