// Companions (同行/伴随, 人车关联): subjects seen near the target's sightings, ranked,
// each a link to its own page; a side-by-side view of the sightings that matched.

import { api } from '../api.js';
import { t, KINDS } from '../i18n.js';
import { h, fill, link, table, field, select, values, guarded, route } from '../dom.js';
import { fmt, defaultRange, apiTime, ms } from '../time.js';

export async function render(root, params) {
  const range = defaultRange();
  const p = {
    kind: params.kind || 'vehicle', subject: params.subject || '', from: params.from || range.from, to: params.to || range.to,
    window: params.window || '60s', scope: params.scope || 'device', candidate_kind: params.candidate_kind || '',
    min_count: params.min_count || '2', limit: params.limit || '50',
  };
  const results = h('div', { id: 'companions-results' });
  const side = h('div', { id: 'companions-side' });
  const kinds = KINDS.map((k) => [k, t(`kind.${k}`)]);
  fill(root, h('form', { class: 'panel', id: 'companions-form', onsubmit: (ev) => {
    ev.preventDefault();
    const next = route('companions', values(ev.target));
    if (location.hash === next) run(values(ev.target), results, side); else location.hash = next;
  } },
  h('h2', {}, t('comp.title')),
  h('div', { class: 'row' },
    select('kind', t('kind'), kinds, p.kind),
    field('subject', t('subject'), { value: p.subject, required: true, size: 14 }),
    field('from', t('from'), { type: 'datetime-local', value: p.from }),
    field('to', t('to'), { type: 'datetime-local', value: p.to })),
  h('div', { class: 'row' },
    field('window', t('comp.window'), { value: p.window, size: 6 }),
    select('scope', t('comp.scope'), [['device', t('scope.device')], ['community', t('scope.community')]], p.scope),
    select('candidate_kind', t('comp.candidateKind'), [['', t('kind.any')], ...kinds], p.candidate_kind),
    field('min_count', t('comp.minCount'), { value: p.min_count, size: 4 }),
    field('limit', t('limit'), { value: p.limit, size: 4 }),
    h('button', { type: 'submit' }, t('run')))), results, side);
  if (p.subject) await run(p, results, side);
}

async function run(p, results, side) {
  fill(side);
  await guarded(async () => {
    const started = performance.now();
    const q = { ...p, from: apiTime(p.from), to: apiTime(p.to) };
    const found = await api.get('/v1/cooccurrence', q);
    fill(results, h('section', {},
      h('p', { class: 'muted' }, `${found.candidates.length} · ${Math.round(performance.now() - started)} ms`),
      table([
        [t('comp.rank'), (_, i) => i + 1, 'num'],
        [t('subject'), (c) => link('subject', { kind: c.kind, subject: c.subject, from: p.from, to: p.to }, c.subject)],
        [t('kind'), (c) => t(`kind.${c.kind}`)],
        [t('hits'), (c) => c.hits, 'num'],
        [t('days'), (c) => c.days, 'num'],
        [t('devices'), (c) => c.devices, 'num'],
        [t('lift'), (c) => c.lift, 'num'],
        [t('first'), (c) => fmt(c.first)],
        [t('last'), (c) => fmt(c.last)],
        ['', (c) => h('button', { type: 'button', class: 'plain compare', onclick: () => compare(q, c, side) }, t('comp.compare'))],
      ], found.candidates, { id: 'companions-table' })));
  });
}

async function all(kind, subject, q) {
  const out = [];
  let cursor = null;
  do {
    const page = await api.get('/v1/trajectory', { kind, subject, from: q.from, to: q.to, limit: 10000, cursor });
    out.push(...page.events);
    cursor = page.next_cursor;
  } while (cursor && out.length < 50000);
  return out;
}

/** Window text (`60s`, `5m`, `1h`, `500ms`, bare seconds) in ms. */
function windowMs(text) {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(String(text).trim());
  if (!m) return 60000;
  return Number(m[1]) * { ms: 1, s: 1000, m: 60000, h: 3600000 }[m[2] || 's'];
}

/** The target's sightings and the companion's that fall in their window, side by side. */
async function compare(q, c, side) {
  await guarded(async () => {
    const [target, other] = await Promise.all([all(q.kind, q.subject, q), all(c.kind, c.subject, q)]);
    const w = windowMs(q.window);
    const place = q.scope === 'community' ? (e) => e.community : (e) => e.device;
    const pairs = [];
    for (const a of target) {
      const ta = ms(a.ts);
      for (const b of other) {
        if (place(a) === place(b) && Math.abs(ms(b.ts) - ta) <= w) pairs.push([a, b]);
      }
    }
    fill(side, h('section', { id: 'side-by-side' },
      h('h3', {}, t('comp.side'), ': ', q.subject, ' ↔ ', c.subject),
      table([
        [`${t('comp.target')} ${t('time')}`, ([a]) => fmt(a.ts)],
        [`${t('comp.target')} ${t('device')}`, ([a]) => a.device],
        [`${t('comp.companion')} ${t('time')}`, ([, b]) => fmt(b.ts)],
        [`${t('comp.companion')} ${t('device')}`, ([, b]) => b.device],
        [t('community'), ([a]) => a.community],
        [t('comp.delta'), ([a, b]) => Math.round((ms(b.ts) - ms(a.ts)) / 1000), 'num'],
      ], pairs, { id: 'side-table' })));
    side.scrollIntoView({ block: 'nearest' });
  });
}
