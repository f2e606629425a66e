// The audit log (admin): entries after a sequence number, a page at a time, filtered
// by key and endpoint by the server; without a filter or a start, the newest 1,000.

import { api } from '../api.js';
import { t } from '../i18n.js';
import { h, fill, table, field, values, guarded, route } from '../dom.js';
import { fmt } from '../time.js';

export async function render(root, params) {
  const p = { after: params.after || '', key: params.key || '', endpoint: params.endpoint || '' };
  if (!p.after) {
    const newest = p.key || p.endpoint ? 0 : (await api.get('/v1/audit', { limit: 1 })).last;
    p.after = String(Math.max(0, newest - 1000));
  }
  const results = h('div', { id: 'audit-results' });
  fill(root, h('form', { class: 'panel', id: 'audit-form', onsubmit: (ev) => {
    ev.preventDefault();
    const next = route('audit', values(ev.target));
    if (location.hash === next) run(values(ev.target), results); else location.hash = next;
  } },
  h('h2', {}, t('audit.title')),
  h('div', { class: 'row' },
    field('after', t('audit.after'), { value: p.after, size: 8 }),
    field('key', t('audit.key'), { value: p.key, size: 10 }),
    field('endpoint', t('audit.endpoint'), { value: p.endpoint, size: 20 }),
    h('button', { type: 'submit' }, t('run')))), results);
  await run(p, results);
}

async function run(p, results) {
  await guarded(async () => {
    const page = await api.get('/v1/audit', { after: p.after, limit: 1000, key: p.key, endpoint: p.endpoint });
    const shown = page.entries;
    fill(results, h('section', {},
      h('p', { class: 'muted' }, `${shown.length} · ${t('audit.seq')} ${Number(p.after) + 1}–${page.next_after} / ${page.last}`, ' ',
        page.next_after < page.last ? h('a', { href: route('audit', { ...p, after: page.next_after }), id: 'audit-more' }, t('audit.more')) : null),
      table([
        [t('audit.seq'), (e) => e.seq, 'num'],
        [t('time'), (e) => fmt(e.ts)],
        [t('audit.key'), (e) => e.key],
        [t('audit.endpoint'), (e) => e.endpoint],
        [t('audit.params'), (e) => decodeParams(e.params)],
        [t('audit.results'), (e) => e.results ?? '', 'num'],
        [t('audit.status'), (e) => e.status, 'num'],
      ], shown, { id: 'audit-table' })));
  });
}

function decodeParams(s) {
  try { return decodeURIComponent(String(s || '').replace(/\+/g, ' ')).slice(0, 160); } catch { return String(s).slice(0, 160); }
}
