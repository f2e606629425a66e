// Search a subject as a person typed it: exact, prefix, wildcard or OCR-aware fuzzy;
// each hit with its count and first and last sighting, a link to its subject page.

import { api } from '../api.js';
import { t, KINDS } from '../i18n.js';
import { h, fill, link, table, field, select, values, guarded, route } from '../dom.js';
import { fmt } from '../time.js';

/** Wildcards as typed: full-width ？ and ＊ (a Chinese input method's) are ? and *. */
const WILD = /[?*？＊]/;

/** Subjects a search shows at most (the closest first). */
const LIMIT = 100;

export async function render(root, params) {
  const mode = params.mode || (WILD.test(params.q || '') ? 'wildcard' : 'fuzzy');
  const results = h('div', { id: 'search-results' });
  const form = h('form', { class: 'panel', id: 'search-form', onsubmit: (ev) => {
    ev.preventDefault();
    const v = values(ev.target);
    const next = route('search', v);
    if (location.hash === next) run(v, results); else location.hash = next;
  } },
  h('h2', {}, t('search.title')),
  h('div', { class: 'row' },
    field('q', t('search.q'), { value: params.q || '', required: true, autofocus: true, size: 24 }),
    select('mode', t('search.mode'), ['fuzzy', 'exact', 'prefix', 'wildcard'].map((m) => [m, t(`mode.${m}`)]), mode),
    select('distance', t('search.distance'), [['1', '1'], ['2', '2']], params.distance || '1'),
    select('kind', t('kind'), [['', t('kind.any')], ...KINDS.map((k) => [k, t(`kind.${k}`)])], params.kind || ''),
    h('button', { type: 'submit' }, t('run'))));
  fill(root, form, results);
  if (params.q) await run({ ...params, mode }, results);
}

async function run(v, results) {
  fill(results, h('p', { class: 'loading' }, t('loading')));
  await guarded(async () => {
    const started = performance.now();
    const q = String(v.q || '').replace(/？/g, '?').replace(/＊/g, '*');
    // A wildcard typed with the default (fuzzy) mode asks for a wildcard search, and
    // the form says so.
    const mode = v.mode === 'fuzzy' && WILD.test(q) ? 'wildcard' : v.mode;
    const picker = document.querySelector('#search-form select[name=mode]');
    if (picker) picker.value = mode;
    // One more than shown: whether there are more is known, not guessed.
    const found = await api.get('/v1/search', {
      q, mode, kind: v.kind,
      distance: mode === 'fuzzy' ? v.distance : undefined, limit: LIMIT + 1,
    });
    const more = found.subjects.length > LIMIT;
    const subjects = found.subjects.slice(0, LIMIT);
    fill(results, h('section', {},
      h('p', { class: 'muted' }, t('search.results', subjects.length), ` · ${Math.round(performance.now() - started)} ms`),
      // The page is cut at LIMIT: said so, not left to look like every match.
      more ? h('p', { class: 'muted', id: 'search-capped' }, t('search.capped', LIMIT)) : null,
      table([
        [t('subject'), (s) => link('subject', { kind: s.kind, subject: s.subject }, s.subject)],
        [t('kind'), (s) => t(`kind.${s.kind}`)],
        [t('count'), (s) => s.count.toLocaleString(), 'num'],
        [t('first'), (s) => fmt(s.first)],
        [t('last'), (s) => fmt(s.last)],
        [t('distance'), (s) => s.distance ?? '', 'num'],
      ], subjects, { id: 'search-table' })));
  });
  if (results.querySelector('.loading')) fill(results);
}
