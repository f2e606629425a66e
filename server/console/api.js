// The documented /v1 API, with the investigator's key (kept in this tab's
// sessionStorage, sent as `Authorization: Bearer …`). Every failure becomes an
// ApiError carrying the server's code, message and field.

import { t } from './i18n.js';

const KEY = 'sightline.key';

export function key() { return sessionStorage.getItem(KEY) || ''; }
export function setKey(token) {
  if (token) sessionStorage.setItem(KEY, token); else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }
}

function headers(extra = {}) {
  const h = { ...extra };
  const k = key();
  if (k) h.Authorization = `Bearer ${k}`;
  return h;
}

/** A query string of `params`, leaving out empty values; arrays repeat the name. */
export function query(params = {}) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') continue;
    for (const v of Array.isArray(value) ? value : [value]) q.append(name, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

async function send(method, path, body, signal) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', t('error.network', e.message));
  }
  return response;
}

/** Called when a request with a key is refused 401 (the key revoked or expired
 *  while the page is open): the page signs out. */
let unauthorized = null;
export function whenUnauthorized(f) { unauthorized = f; }

async function failure(response) {
  if (response.status === 401 && key() && unauthorized) queueMicrotask(unauthorized);
  let code = `http_${response.status}`;
  let message = response.statusText || `HTTP ${response.status}`;
  let field = null;
  try {
    const v = await response.json();
    if (v && v.error) {
      code = v.error.code || code;
      message = v.error.message || message;
      field = v.error.field || null;
      if (v.error.line !== undefined && !field) field = `line ${v.error.line}`;
    }
  } catch { /* not the error shape: keep the status */ }
  return new ApiError(response.status, code, message, field);
}

async function json(method, path, body, signal) {
  const response = await send(method, path, body, signal);
  if (!response.ok) throw await failure(response);
  return response.json();
}

export const api = {
  get: (path, params, signal) => json('GET', path + query(params), undefined, signal),
  post: (path, body) => json('POST', path, body),
  del: (path) => json('DELETE', path),
  /** A picture's bytes as an object URL (an <img> cannot send the key itself). */
  async picture(id) {
    const response = await send('GET', `/v1/images/${encodeURIComponent(id)}`);
    if (!response.ok) throw await failure(response);
    return URL.createObjectURL(await response.blob());
  },
};
