// Community views: who comes often (频繁出入), who comes only at night (昼伏夜出), who
// is new (首次出现), and counts per day or hour as a chart.

import { api } from '../api.js';
import { t, KINDS } from '../i18n.js';
import { h, fill, link, table, field, select, values, guarded, route } from '../dom.js';
import { fmt, defaultRange, apiTime, ms, DAY_MS } from '../time.js';
import { countsChart } from '../chart.js';

const TABS = [['frequency', 'comm.frequency'], ['nocturnal', 'comm.nocturnal'], ['first-seen', 'comm.firstSeen'], ['counts', 'comm.counts']];

export async function render(root, params, ctx) {
  const tab = TABS.some(([k]) => k === params.tab) ? params.tab : 'frequency';
  const range = defaultRange();
  const communities = await ctx.communities().catch(() => []);
  const p = { community: '', kind: tab === 'nocturnal' ? 'face' : 'vehicle', from: range.from, to: range.to, ...params, tab };
  const results = h('div', { id: 'community-results' });
  const kinds = KINDS.map((k) => [k, t(`kind.${k}`)]);
  const communityField = h('label', {}, t('community'), h('input', { name: 'community', value: p.community, list: 'community-codes', size: 12, required: tab === 'frequency' || tab === 'first-seen' }),
    h('datalist', { id: 'community-codes' }, communities.map((c) => h('option', { value: c.code }, c.name))));
  const specific = {
    frequency: [field('min_count', t('comm.minCount'), { value: p.min_count || '', size: 4 }), field('min_days', t('comm.minDays'), { value: p.min_days ?? '3', size: 4 })],
    nocturnal: [field('day_start_hour', t('comm.dayStart'), { value: p.day_start_hour || '6', size: 3 }), field('day_end_hour', t('comm.dayEnd'), { value: p.day_end_hour || '18', size: 3 }),
      field('min_night', t('comm.minNight'), { value: p.min_night || '5', size: 3 }), field('max_day', t('comm.maxDay'), { value: p.max_day || '2', size: 3 })],
    'first-seen': [field('lookback', t('comm.lookback'), { value: p.lookback || '30d', size: 5 })],
    counts: [select('by', t('comm.by'), ['community', 'device', 'kind'].map((b) => [b, t(`by.${b}`)]), p.by || 'community'),
      select('per', t('comm.per'), [['day', t('per.day')], ['hour', t('per.hour')]], p.per || 'day')],
  }[tab];
  fill(root,
    h('div', { class: 'tabs' }, TABS.map(([k, label]) => h('a', { href: route('community', { tab: k, community: p.community }), class: k === tab ? 'on' : null }, t(label)))),
    h('form', { class: 'panel', id: 'community-form', onsubmit: (ev) => {
      ev.preventDefault();
      const next = route('community', { tab, ...values(ev.target) });
      if (location.hash === next) run(tab, values(ev.target), results); else location.hash = next;
    } },
    h('h2', {}, t('comm.title'), ' · ', t(TABS.find(([k]) => k === tab)[1])),
    h('div', { class: 'row' }, communityField,
      tab === 'counts' ? select('kind', t('kind'), [['', t('kind.any')], ...kinds], p.kind === 'vehicle' && !params.kind ? '' : p.kind) : select('kind', t('kind'), kinds, p.kind),
      field('from', t('from'), { type: 'datetime-local', value: p.from }),
      field('to', t('to'), { type: 'datetime-local', value: p.to }),
      specific,
      tab === 'counts' ? null : field('limit', t('limit'), { value: p.limit || '100', size: 4 }),
      h('button', { type: 'submit' }, t('run')))),
    results);
  if (params.community || params.from) {
    await run(tab, values(root.querySelector('#community-form')), results);
  }
}

const HOUR_MS = 3600 * 1000;

/** Counts by epoch-ms bucket, with the empty hours or days between the first and the
 * last as zeros (the API lists only buckets that hold events), so the chart's x axis is
 * time. */
function everyBucket(counts, step) {
  if (!counts.length) return [];
  const rows = counts.map((r) => ({ ...r, bucket: ms(r.bucket) }));
  const seen = new Set(rows.map((r) => r.bucket));
  const first = Math.min(...seen), last = Math.max(...seen);
  for (let b = first; b <= last && rows.length < 200_000; b += step) {
    if (!seen.has(b)) rows.push({ bucket: b, key: rows[0].key, count: 0 });
  }
  return rows;
}

/** The parameters each view takes (anything else would be refused by name). */
const ACCEPTS = {
  frequency: ['community', 'kind', 'from', 'to', 'min_count', 'min_days', 'limit'],
  nocturnal: ['community', 'kind', 'from', 'to', 'day_start_hour', 'day_end_hour', 'min_night', 'max_day', 'limit'],
  'first-seen': ['community', 'kind', 'from', 'to', 'lookback', 'limit'],
  counts: ['community', 'kind', 'from', 'to', 'by', 'per'],
};

async function run(tab, v, results) {
  await guarded(async () => {
    const q = Object.fromEntries(ACCEPTS[tab].map((k) => [k, v[k]]));
    q.from = apiTime(v.from);
    q.to = apiTime(v.to);
    const subjectLink = (s) => link('subject', { kind: v.kind, subject: s.subject, from: v.from, to: v.to }, s.subject);
    if (tab === 'counts') {
      const { counts } = await api.get('/v1/counts', q);
      const chart = h('div', { class: 'chart' });
      fill(results, h('section', { id: 'counts-chart' }, counts.length ? chart : null,
        table([[t('time'), (r) => fmt(r.bucket)], [t('comm.by'), (r) => r.key], [t('count'), (r) => r.count.toLocaleString(), 'num']], counts, { id: 'counts-table' })));
      if (counts.length) await countsChart(chart, everyBucket(counts, v.per === 'hour' ? HOUR_MS : DAY_MS), { per: v.per === 'hour' ? 'hour' : 'day' });
      return;
    }
    const endpoint = { frequency: '/v1/frequency', nocturnal: '/v1/nocturnal', 'first-seen': '/v1/first-seen' }[tab];
    const { subjects } = await api.get(endpoint, q);
    const columns = {
      frequency: [[t('subject'), subjectLink], [t('count'), (s) => s.count, 'num'], [t('days'), (s) => s.days, 'num'], [t('first'), (s) => fmt(s.first)], [t('last'), (s) => fmt(s.last)]],
      nocturnal: [[t('subject'), subjectLink], [t('comm.night'), (s) => s.night, 'num'], [t('comm.day'), (s) => s.day, 'num'], [t('comm.nightDays'), (s) => s.night_days, 'num'], [t('comm.ratio'), (s) => s.night_ratio, 'num']],
      'first-seen': [[t('subject'), subjectLink], [t('first'), (s) => fmt(s.first)], [t('count'), (s) => s.count, 'num']],
    }[tab];
    fill(results, h('section', {}, h('p', { class: 'muted' }, `${subjects.length}`), table(columns, subjects, { id: 'community-table' })));
  });
}
