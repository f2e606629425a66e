// Charts, drawn by uPlot: `vendor/uPlot.iife.min.js` and `vendor/uPlot.min.css`, copied
// from the npm package pinned in `vendor/package.json` and embedded in the binary like
// every other file. uPlot is fetched from this server the first time a
// chart is drawn, so views without a chart never load it. It draws on a canvas and
// styles its elements through the CSSOM only (no inline <style>, no eval), which the
// console's Content-Security-Policy allows. The per-day timeline of a subject is not a
// chart of this kind and stays in `timeline.js`.

import { t } from './i18n.js';
import { fmt, midnight, DAY_MS } from './time.js';

export const PALETTE = ['#1d4e89', '#d1495b', '#00798c', '#edae49', '#66a182', '#8d6a9f', '#2e4057', '#c36f09', '#5f0f40', '#3d5a80'];
const HOUR_MS = 3600 * 1000;
const GRID = '#e3e7eb', AXIS = '#5b6470';

/** A colour per key, in order of first appearance. */
export function colours(keys) {
  const out = new Map();
  for (const k of keys) if (!out.has(k)) out.set(k, PALETTE[out.size % PALETTE.length]);
  return out;
}

let loading = null;

/** The uPlot constructor, loading the library and its style sheet on first use. */
export function uplot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  loading = loading || Promise.all([
    attach('link', { rel: 'stylesheet', href: '/console/vendor/uPlot.min.css' }),
    attach('script', { src: '/console/vendor/uPlot.iife.min.js' }),
  ]).then(() => window.uPlot, (e) => { loading = null; throw e; });
  return loading;
}

function attach(tag, props) {
  return new Promise((resolve, reject) => {
    const el = Object.assign(document.createElement(tag), props);
    el.onload = resolve;
    el.onerror = () => reject(new Error(`${props.href || props.src}: not loaded`));
    document.head.append(el);
  });
}

/** Counts per bucket as stacked bars in `into`, a colour and a legend row per key, x in
 * Beijing time: `series` is [{bucket (epoch ms), key, count}], `per` 'day' or 'hour'.
 * Drag to zoom, double-click to zoom out; the legend shows the counts under the cursor. */
export async function countsChart(into, series, { per = 'day', height = 260 } = {}) {
  const uPlot = await uplot();
  const step = per === 'hour' ? HOUR_MS : DAY_MS;
  const xs = [...new Set(series.map((r) => r.bucket))].sort((a, b) => a - b);
  const keyColour = colours(series.map((r) => r.key));
  const keys = [...keyColour.keys()];
  const at = new Map(xs.map((x, i) => [x, i]));
  const own = keys.map(() => new Array(xs.length).fill(0));
  const row = new Map(keys.map((k, i) => [k, i]));
  for (const r of series) own[row.get(r.key)][at.get(r.bucket)] += r.count;
  // Stacked: key i's bar runs up to the sum of keys 0..=i. uPlot draws the series in
  // order, so the tallest stack goes first and each key below is drawn over it.
  let sum = new Array(xs.length).fill(0);
  const tops = own.map((o) => (sum = sum.map((v, j) => v + o[j])));
  const order = keys.map((_, i) => keys.length - 1 - i);
  const when = (v) => (per === 'hour' ? `${fmt(v).slice(0, 13)}:00` : fmt(v).slice(0, 10));
  const tick = (v) => (per === 'hour' && v !== midnight(v) ? `${fmt(v).slice(11, 13)}:00` : fmt(v).slice(5, 10));
  const opts = {
    width: Math.max(320, into.clientWidth || 900),
    height,
    ms: 1,
    tzDate: (ts) => uPlot.tzDate(new Date(ts), 'Asia/Shanghai'),
    cursor: { points: { show: false }, drag: { x: true, y: false } },
    scales: {
      x: { time: true, range: (u, min, max) => [min - step / 2, max + step / 2] },
      y: { range: (u, min, max) => [0, Math.max(1, max) * 1.05] },
    },
    axes: [
      { stroke: AXIS, grid: { stroke: GRID, width: 1 }, ticks: { stroke: GRID, width: 1 }, space: per === 'hour' ? 56 : 44,
        incrs: per === 'hour' ? [1, 2, 3, 6, 12, 24, 48, 168].map((h) => h * HOUR_MS) : [1, 2, 7, 14, 28].map((d) => d * DAY_MS),
        values: (u, splits) => splits.map(tick) },
      { stroke: AXIS, grid: { stroke: GRID, width: 1 }, ticks: { stroke: GRID, width: 1 }, size: 56,
        label: t('count'), values: (u, splits) => splits.map((v) => (Number.isInteger(v) ? v.toLocaleString() : '')) },
    ],
    series: [
      { label: t('time'), value: (u, v) => (v == null ? '–' : when(v)) },
      ...order.map((i) => ({
        label: keys[i],
        stroke: keyColour.get(keys[i]),
        fill: keyColour.get(keys[i]),
        width: 0,
        points: { show: false },
        paths: uPlot.paths.bars({ size: [0.8, 48], gap: 1 }),
        value: (u, v, s, idx) => (idx == null ? '–' : own[i][idx].toLocaleString()),
      })),
    ],
  };
  const chart = new uPlot(opts, [xs, ...order.map((i) => tops[i])], into);
  new ResizeObserver(() => {
    if (into.clientWidth > 0 && into.clientWidth !== chart.width) chart.setSize({ width: Math.max(320, into.clientWidth), height });
  }).observe(into);
  return chart;
}
