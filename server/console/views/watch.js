// Watchlists (布控): create one (exact, wildcard and fuzzy entries, a reason and an
// expiry), see them, delete (撤控) them. The live alerts they raise are in the panel
// on the right (app.js).

import { api } from '../api.js';
import { t, KINDS } from '../i18n.js';
import { h, fill, table, field, select, guarded } from '../dom.js';
import { fmt, inputValue, apiTime, DAY_MS } from '../time.js';

export async function render(root) {
  const list = h('section', { id: 'watchlists' });
  const entries = h('div', { id: 'entries' });
  const addEntry = () => {
    const i = entries.children.length;
    entries.append(h('div', { class: 'cond entry' },
      select(`entries[${i}].kind`, t('kind'), KINDS.map((k) => [k, t(`kind.${k}`)]), 'vehicle'),
      select(`entries[${i}].type`, t('watch.type'), ['subject', 'pattern', 'fuzzy'].map((k) => [k, t(`type.${k}`)]), 'subject'),
      field(`entries[${i}].value`, t('watch.value'), { size: 16, required: true }),
      field(`entries[${i}].distance`, t('distance'), { size: 3, value: '1' })));
  };
  const form = h('form', { class: 'panel', id: 'watch-form', onsubmit: (ev) => { ev.preventDefault(); create(form, entries, list); } },
    h('h2', {}, t('watch.title')),
    h('div', { class: 'row' },
      field('name', t('watch.name'), { required: true, size: 16 }),
      field('reason', t('watch.reason'), { required: true, size: 24 }),
      field('expires', t('watch.expires'), { type: 'datetime-local', value: inputValue(Date.now() + 7 * DAY_MS) })),
    h('h3', {}, t('watch.entries')),
    entries,
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'plain', id: 'add-entry', onclick: addEntry }, t('watch.addEntry')),
      h('button', { type: 'submit' }, t('watch.create'))));
  addEntry();
  fill(root, form, list);
  await refresh(list);
}

async function create(form, entries, list) {
  await guarded(async () => {
    const el = form.elements;
    const body = {
      name: el.name.value.trim(),
      reason: el.reason.value.trim(),
      expires: apiTime(el.expires.value) || undefined,
      entries: [...entries.children].map((row, i) => {
        const get = (f) => form.elements[`entries[${i}].${f}`].value.trim();
        const entry = { kind: get('kind'), [get('type')]: get('value') };
        if (get('type') === 'fuzzy') entry.distance = Number(get('distance'));
        return entry;
      }),
    };
    const made = await api.post('/v1/watchlists', body);
    form.reset();
    await refresh(list, t('watch.created', made.id));
  });
}

/** Lists the watchlists under the form (a cluster's query node keeps them too). */
async function refresh(list, note) {
  await guarded(async () => {
    const { watchlists } = await api.get('/v1/watchlists');
    const entryText = (e) => `${t(`kind.${e.kind}`)} ${e.subject ?? e.pattern ?? `~${e.fuzzy}`}`;
    fill(list, h('h3', {}, t('watch.list')), note ? h('p', { class: 'muted', id: 'watch-note' }, note) : null,
      table([
        ['#', (w) => w.id],
        [t('watch.name'), (w) => w.name],
        [t('watch.reason'), (w) => w.reason || ''],
        [t('watch.expires'), (w) => (w.expires_ms ? `${fmt(w.expires_ms)}${w.expires_ms < Date.now() ? ` (${t('watch.expired')})` : ''}` : '')],
        [t('watch.entries'), (w) => (w.entries || []).slice(0, 5).map(entryText).join('; ') + ((w.entries || []).length > 5 ? ' …' : '')],
        // Two steps: the first press asks to confirm (for 5 s), the second deletes.
        ['', (w) => h('button', { type: 'button', class: 'plain delete', onclick: async (ev) => {
          const button = ev.currentTarget;
          if (!button.dataset.armed) {
            button.dataset.armed = '1';
            fill(button, t('watch.confirmDelete'));
            setTimeout(() => { delete button.dataset.armed; fill(button, t('watch.delete')); }, 5000);
            return;
          }
          await guarded(async () => { await api.del(`/v1/watchlists/${encodeURIComponent(w.id)}`); await refresh(list); });
        } }, t('watch.delete'))],
      ], watchlists, { id: 'watch-table' }));
  });
}
