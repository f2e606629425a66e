// Building the page: elements from data (text is always text, never parsed as HTML),
// tables, links between views, the error banner, downloads.

import { t } from './i18n.js';

/** An element: `h('a', {href: '#/x', class: 'on'}, 'text', child, …)`. Attributes
 * starting with `on` are listeners; `null`/`false` children are skipped. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A link to a view of the console: `#/subject?kind=…&subject=…`. */
export function route(view, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return `#/${view}${s ? `?${s}` : ''}`;
}

export function link(view, params, text) {
  return h('a', { href: route(view, params) }, text);
}

/** A table: `columns` are `[label, (row) => cell, 'num'?]`. */
export function table(columns, rows, attrs = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, t('none'));
  return h('div', { class: 'scroll' }, h('table', attrs,
    h('thead', {}, h('tr', {}, columns.map(([label, , cls]) => h('th', { class: cls }, label)))),
    h('tbody', {}, rows.map((r, i) => h('tr', {}, columns.map(([, cell, cls]) => h('td', { class: cls }, cell(r, i))))))));
}

/** A labelled input: `field('from', t('from'), {type: 'datetime-local', value})`. */
export function field(name, label, attrs = {}) {
  return h('label', {}, label, h('input', { name, ...attrs }));
}

export function select(name, label, options, value) {
  return h('label', {}, label, h('select', { name },
    options.map(([v, text]) => h('option', { value: v, selected: v === value }, text))));
}

/** The values of a form's named controls. */
export function values(form) {
  const out = {};
  for (const el of form.elements) if (el.name) out[el.name] = el.value.trim();
  return out;
}

/** Shows an error (an ApiError: its status, code, message and field) above the view,
 * and marks the form control the field names. Never leaves the page blank. */
export function showError(err) {
  const box = document.getElementById('error');
  const status = err.status ? `${err.status} ${err.code}` : (err.code || err.name || 'Error');
  fill(box, h('strong', {}, t('error.title')), ` (${status}): `, h('span', { class: 'message' }, err.message || String(err)));
  if (err.field) box.append(' — ', t('error.field'), ' ', h('span', { class: 'field' }, err.field));
  box.hidden = false;
  document.querySelectorAll('[aria-invalid="true"]').forEach((el) => el.removeAttribute('aria-invalid'));
  if (err.field) {
    document.querySelectorAll(`#view [name="${CSS.escape(err.field)}"]`).forEach((el) => el.setAttribute('aria-invalid', 'true'));
  }
}

export function clearError() {
  const box = document.getElementById('error');
  box.hidden = true;
  box.replaceChildren();
  document.querySelectorAll('[aria-invalid="true"]').forEach((el) => el.removeAttribute('aria-invalid'));
}

/** Runs `work`, showing its error if it fails; clears the banner first. */
export async function guarded(work) {
  clearError();
  try {
    return await work();
  } catch (e) {
    if (e.name !== 'AbortError') showError(e);
    return undefined;
  }
}

/** Offers `text` as a file download. */
export function download(name, text, type = 'text/csv;charset=utf-8') {
  const url = URL.createObjectURL(new Blob(['\ufeff', text], { type }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A CSV cell. */
export function csv(value) {
  const s = value === null || value === undefined ? '' : String(value);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Opens a picture full size; a click or Escape closes it, and the focus goes back
 *  to what opened it (`from`). */
export function enlarge(url, from) {
  const box = document.getElementById('lightbox');
  fill(box, h('img', { src: url, alt: '' }));
  box.hidden = false;
  box.tabIndex = -1;
  box.focus();
  const close = () => {
    box.hidden = true;
    box.replaceChildren();
    document.removeEventListener('keydown', onKey);
    if (from) from.focus();
  };
  const onKey = (ev) => { if (ev.key === 'Escape') close(); };
  document.addEventListener('keydown', onKey);
  box.onclick = close;
}
