// A subject's page: its trajectory as a time-ordered table paged with the API's
// cursor (never loaded whole), a per-day timeline (marks per community, stays as
// bars), pictures of each sighting, CSV export, its overnight base, and links to its
// companions. `#/event?id=N` shows one sighting (an alert's link) with its pictures.

import { api } from '../api.js';
import { t } from '../i18n.js';
import { h, fill, link, table, field, select, values, guarded, route, download, csv, enlarge } from '../dom.js';
import { fmt, date, defaultRange, apiTime, inputValue, midnight, DAY_MS, ms } from '../time.js';
import { colours } from '../chart.js';
import { timeline } from '../timeline.js';

export async function render(root, params, ctx, name) {
  if (name === 'event') return renderEvent(root, params);
  const range = defaultRange();
  const p = {
    kind: params.kind || 'vehicle', subject: params.subject || '',
    from: params.from || range.from, to: params.to || range.to,
    community: params.community || '', limit: params.limit || '100',
  };
  const q = { kind: p.kind, subject: p.subject, from: apiTime(p.from), to: apiTime(p.to), community: p.community };
  const form = h('form', { class: 'panel', id: 'subject-form', onsubmit: (ev) => {
    ev.preventDefault();
    location.hash = route('subject', { ...p, ...values(ev.target) });
  } },
  h('h2', {}, t('subject.title'), ': ', h('span', { id: 'subject-name' }, p.subject), ' ', h('span', { class: 'muted' }, t(`kind.${p.kind}`))),
  h('div', { class: 'row' },
    field('from', t('from'), { type: 'datetime-local', value: p.from }),
    field('to', t('to'), { type: 'datetime-local', value: p.to }),
    field('community', t('community'), { value: p.community, size: 12 }),
    select('limit', t('subject.perPage'), ['100', '500', '1000'].map((n) => [n, n]), p.limit),
    h('button', { type: 'submit' }, t('run')),
    h('a', { href: route('companions', { kind: p.kind, subject: p.subject, from: p.from, to: p.to }), id: 'to-companions' }, t('subject.companions')),
    h('button', { type: 'button', class: 'plain', id: 'overnight', onclick: () => overnight(q, extra) }, t('subject.overnight')),
    h('button', { type: 'button', class: 'plain', id: 'export-csv', onclick: (ev) => exportCsv(q, p, ev.target) }, t('subject.csv'))));
  const extra = h('div', { id: 'subject-extra' });
  const line = h('section', { id: 'timeline' }, h('h3', {}, t('subject.timeline')));
  const track = h('section', { id: 'trajectory' }, h('h3', {}, t('subject.track')));
  fill(root, form, extra, line, track);
  if (!p.subject) return;
  // The page shown is kept in the address (the cursors of pages 2…n, `pages`), so a
  // reload, or back and forward, shows it again.
  const kept = (params.pages || '').split(',').filter(Boolean);
  const state = { cursors: [null, ...kept], page: kept.length, stays: [], staysTruncated: false, colour: null };
  if (state.page > 0) {
    // The stays come with the first page only: asked for on their own.
    await guarded(async () => {
      const first = await api.get('/v1/trajectory', { ...q, limit: 1 });
      state.stays = first.stays || []; state.staysTruncated = first.stays_truncated;
    });
  }
  await showPage(q, p, state, line, track);
}

async function showPage(q, p, state, line, track) {
  // The address names the page shown (replaced, not pushed: paging is not a view).
  const pages = state.cursors.slice(1, state.page + 1).join(',');
  const here = route('subject', { ...p, pages: pages || undefined });
  if (location.hash !== here) history.replaceState(null, '', here);
  await guarded(async () => {
    const page = await api.get('/v1/trajectory', { ...q, limit: p.limit, cursor: state.cursors[state.page] });
    if (state.page === 0) { state.stays = page.stays || []; state.staysTruncated = page.stays_truncated; }
    state.cursors[state.page + 1] = page.next_cursor || null;
    const events = page.events;
    state.colour = state.colour || colours([]);
    const colourOf = (c) => {
      if (!state.colour.has(c)) state.colour.set(c, ['#1d4e89', '#d1495b', '#00798c', '#edae49', '#66a182', '#8d6a9f', '#2e4057', '#c36f09'][state.colour.size % 8]);
      return state.colour.get(c);
    };
    drawTimeline(line, events, state, colourOf);
    const pager = h('div', { class: 'pager' },
      h('button', { type: 'button', class: 'plain', id: 'prev-page', disabled: state.page === 0, onclick: () => { state.page -= 1; showPage(q, p, state, line, track); } }, t('subject.prev')),
      h('span', { id: 'page-no' }, t('subject.page', state.page + 1)),
      h('button', { type: 'button', class: 'plain', id: 'next-page', disabled: !page.next_cursor, onclick: () => { state.page += 1; showPage(q, p, state, line, track); } }, t('subject.next')),
      h('span', { class: 'muted' }, t('subject.shown', events.length)));
    fill(track, h('h3', {}, t('subject.track')), pager, table([
      ['#', (e) => e.id, 'num'],
      [t('time'), (e) => fmt(e.ts)],
      [t('community'), (e) => e.community],
      [t('device'), (e) => e.device],
      [t('direction'), (e) => t(`dir.${e.direction}`)],
      [t('subject.pictures'), (e) => thumbs(e)],
    ], events, { id: 'trajectory-table', 'data-page': state.page + 1 }));
    loadThumbs(track);
  });
}

function drawTimeline(line, events, state, colourOf) {
  const byDay = new Map();
  const day = (d) => { if (!byDay.has(d)) byDay.set(d, { date: d, events: [], stays: [] }); return byDay.get(d); };
  for (const s of state.stays) day(date(s.in)).stays.push(s);
  for (const e of events) day(date(e.ts)).events.push(e);
  const days = [...byDay.values()].sort((a, b) => a.date.localeCompare(b.date));
  const svg = timeline(days, colourOf);
  fill(line, h('h3', {}, t('subject.timeline')),
    h('div', { class: 'legend' }, [...state.colour.entries()].map(([c, colour]) => {
      const swatch = h('i');
      swatch.style.background = colour;
      return h('span', {}, swatch, c);
    })),
    state.staysTruncated ? h('p', { class: 'muted' }, t('subject.staysTruncated')) : null,
    h('div', { class: 'scroll' }, svg));
}

/** Thumbnail placeholders for an event's pictures, loaded after the table is drawn. */
function thumbs(e) {
  if (!e.images || !e.images.length) return '';
  return h('span', { class: 'thumbs' }, e.images.map((img) => h('img', {
    alt: img.type || '', 'data-picture': img.id || String(img.url || '').split('/').pop(), width: 48, height: 36,
  })));
}

/** Fetches the page's pictures (with the key: an <img> cannot send it), four at once. */
async function loadThumbs(root) {
  const pending = [...root.querySelectorAll('img[data-picture]')];
  const worker = async () => {
    for (let img = pending.shift(); img; img = pending.shift()) {
      try {
        const url = await api.picture(img.dataset.picture);
        img.src = url;
        img.removeAttribute('width'); img.removeAttribute('height');
        img.addEventListener('click', () => enlarge(url, img));
        // From the keyboard too: focusable, opened with Enter or Space.
        img.tabIndex = 0;
        img.setAttribute('role', 'button');
        img.addEventListener('keydown', (ev) => {
          if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); enlarge(url, img); }
        });
        img.classList.add('loaded');
      } catch (e) {
        img.alt = `${e.status || ''} ${e.message}`;
        img.title = e.message;
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

async function overnight(q, extra) {
  await guarded(async () => {
    const o = await api.get('/v1/overnight', { kind: q.kind, subject: q.subject, from: q.from, to: q.to });
    const at = (x) => (x ? `${fmt(x.ts)} ${x.community}` : '');
    fill(extra, h('section', { id: 'overnight-result' }, h('h3', {}, t('subject.overnight')),
      h('div', { class: 'split' },
        h('div', {}, h('h3', {}, t('subject.bases')), table([
          [t('community'), (b) => b.community], [t('subject.nights'), (b) => b.nights, 'num'],
        ], o.bases)),
        h('div', {}, h('h3', {}, t('subject.nights')), table([
          [t('subject.date'), (n) => n.date], [t('subject.evening'), (n) => at(n.evening)], [t('subject.morning'), (n) => at(n.morning)],
        ], o.nights)))));
  });
}

/** The whole trajectory as CSV, fetched page by page (10,000 rows a request). */
async function exportCsv(q, p, button) {
  await guarded(async () => {
    button.disabled = true;
    const lines = ['id,time_beijing,community,device,kind,subject,direction,attrs,images'];
    let cursor = null;
    try {
      do {
        const page = await api.get('/v1/trajectory', { ...q, limit: 10000, cursor });
        for (const e of page.events) {
          lines.push([e.id, fmt(e.ts), e.community, e.device, e.kind, e.subject, e.direction,
            JSON.stringify(e.attrs || {}), (e.images || []).map((i) => i.id).join(' ')].map(csv).join(','));
        }
        button.textContent = t('subject.exporting', lines.length - 1);
        cursor = page.next_cursor;
      } while (cursor);
      download(`${p.subject}_${p.from.slice(0, 10)}_${p.to.slice(0, 10)}.csv`, `${lines.join('\r\n')}\r\n`);
    } finally {
      button.disabled = false;
      button.textContent = t('subject.csv');
    }
  });
}

async function renderEvent(root, params) {
  const e = await api.get(`/v1/events/${encodeURIComponent(params.id || '')}`);
  const day = midnight(ms(e.ts));
  fill(root, h('section', { id: 'event' },
    h('h2', {}, `${t('subject.event')} #${e.id}`),
    h('div', { class: 'kv' },
      t('subject'), link('subject', { kind: e.kind, subject: e.subject, from: inputValue(day), to: inputValue(day + DAY_MS) }, e.subject),
      t('kind'), t(`kind.${e.kind}`), t('time'), fmt(e.ts), t('community'), e.community, t('device'), e.device,
      t('direction'), t(`dir.${e.direction}`), 'attrs', JSON.stringify(e.attrs || {})),
    h('p', {}, thumbs(e))));
  loadThumbs(root);
}
