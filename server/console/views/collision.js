// Collision (碰撞): 2–32 conditions, each communities or devices over a time range,
// and how many of them a subject must meet (k of n); results link to subject pages.

import { api } from '../api.js';
import { t, KINDS } from '../i18n.js';
import { h, fill, link, table, field, select, guarded } from '../dom.js';
import { defaultRange, apiTime } from '../time.js';

const MAX = 32;

export async function render(root, params, ctx) {
  const range = defaultRange();
  const known = await ctx.communities().catch(() => []);
  const codes = h('datalist', { id: 'collision-codes' }, known.map((c) => h('option', { value: c.code }, c.name)));
  const conditions = h('div', { id: 'conditions' });
  const results = h('div', { id: 'collision-results' });
  const addCondition = (c = {}) => {
    if (conditions.children.length >= MAX) return;
    const row = h('div', { class: 'cond' },
      h('span', { class: 'n' }),
      select('place', t('coll.place'), [['communities', t('coll.byCommunity')], ['devices', t('coll.byDevice')]], c.place || 'communities'),
      field('codes', t('coll.codes'), { value: c.codes || '', size: 28, required: true, list: 'collision-codes' }),
      field('from', t('from'), { type: 'datetime-local', value: c.from || range.from }),
      field('to', t('to'), { type: 'datetime-local', value: c.to || range.to }),
      h('button', { type: 'button', class: 'plain remove', onclick: (ev) => { if (conditions.children.length > 2) { ev.target.closest('.cond').remove(); renumber(conditions); } } }, t('coll.remove')));
    const [placeSelect] = row.querySelectorAll('select');
    placeSelect.dataset.role = 'place';
    placeSelect.addEventListener('change', () => renumber(conditions));
    ['codes', 'from', 'to'].forEach((role, i) => { row.querySelectorAll('input')[i].dataset.role = role; });
    conditions.append(row);
    renumber(conditions);
  };
  const form = h('form', { class: 'panel', id: 'collision-form', onsubmit: (ev) => { ev.preventDefault(); run(form, conditions, results); } },
    h('h2', {}, t('coll.title')),
    h('div', { class: 'row' },
      select('kind', t('kind'), KINDS.map((k) => [k, t(`kind.${k}`)]), 'vehicle'),
      field('min_conditions', t('coll.k'), { value: '2', size: 4 }),
      field('limit', t('limit'), { value: '1000', size: 5 })),
    conditions,
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'plain', id: 'add-condition', onclick: () => addCondition() }, t('coll.add')),
      h('button', { type: 'submit' }, t('run'))));
  addCondition();
  addCondition();
  fill(root, form, codes, results);
}

/** Numbers the conditions and names their fields as the API's errors do
 * (`conditions[1].from`), so an error marks the field it names. */
function renumber(conditions) {
  [...conditions.children].forEach((c, i) => {
    c.querySelector('.n').textContent = `${i + 1}`;
    c.dataset.index = i;
    const place = c.querySelector('select').value;
    for (const el of c.querySelectorAll('[data-role]')) {
      const role = el.dataset.role;
      el.name = `conditions[${i}].${role === 'codes' ? place : role}`;
    }
  });
}

async function run(form, conditions, results) {
  renumber(conditions);
  await guarded(async () => {
    const el = form.elements;
    const body = {
      kind: el.kind.value,
      min_conditions: Number(el.min_conditions.value),
      limit: Number(el.limit.value),
      conditions: [...conditions.children].map((c) => {
        const place = c.querySelector('select').value;
        const inputs = c.querySelectorAll('input');
        return {
          [place]: inputs[0].value.split(/[,，\s]+/).filter(Boolean),
          from: apiTime(inputs[1].value),
          to: apiTime(inputs[2].value),
        };
      }),
    };
    if (!Number.isFinite(body.min_conditions)) body.min_conditions = body.conditions.length;
    const found = await api.post('/v1/collision', body);
    fill(results, h('section', {},
      h('p', { class: 'muted' }, `${found.subjects.length}`),
      table([
        [t('subject'), (s) => link('subject', { kind: s.kind, subject: s.subject }, s.subject)],
        [t('kind'), (s) => t(`kind.${s.kind}`)],
        [t('coll.matched'), (s) => s.conditions.map((i) => i + 1).join(', ')],
      ], found.subjects, { id: 'collision-table' })));
  });
}
