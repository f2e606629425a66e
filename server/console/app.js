// The console's shell: who is signed in, the navigation the role allows, the views
// (one module each, chosen by the address's #/view?params), the language switch and
// the live alert panel.

import { api, ApiError, key, setKey, whenUnauthorized } from './api.js';
import { t, switchLang, lang } from './i18n.js';
import { h, fill, route, guarded, showError, clearError } from './dom.js';
import { fmt } from './time.js';
import * as search from './views/search.js';
import * as subject from './views/subject.js';
import * as companions from './views/companions.js';
import * as collision from './views/collision.js';
import * as community from './views/community.js';
import * as watch from './views/watch.js';
import * as audit from './views/audit.js';

const VIEWS = {
  search, subject, event: subject, companions, collision, community, watch, audit,
};
const NAV = [
  ['search', 'nav.search'], ['companions', 'nav.companions'], ['collision', 'nav.collision'],
  ['community', 'nav.community'], ['watch', 'nav.watch'], ['audit', 'nav.audit', 'admin'],
];

/** What the views share: the signed-in key (`/v1/whoami`), the communities it sees. */
const ctx = {
  me: null,
  communitiesCache: null,
  async communities() {
    if (!this.communitiesCache) this.communitiesCache = (await api.get('/v1/communities')).communities;
    return this.communitiesCache;
  },
};

let alertLoop = null;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [name, q = ''] = raw.split('?');
  return { name: name || 'search', params: Object.fromEntries(new URLSearchParams(q)) };
}

async function whoami() {
  try {
    ctx.me = await api.get('/v1/whoami');
  } catch (e) {
    ctx.me = null;
    if (!(e instanceof ApiError) || (e.status !== 401 && e.status !== 403)) throw e;
    if (key()) {
      setKey('');
      // Refused for its role (an ingest key): said in the console's words.
      if (e.status === 403) throw new ApiError(403, e.code, t('who.ingestOnly'), 'key');
      throw e;
    }
  }
}

function header() {
  document.documentElement.lang = lang();
  fill(document.getElementById('lang'), t('lang.other'));
  const out = document.getElementById('signout');
  out.hidden = !ctx.me || ctx.me.open;
  fill(out, t('signout'));
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  if (!ctx.me) { fill(nav); fill(who); return; }
  const { name: current } = parseHash();
  fill(nav, NAV.filter(([, , role]) => !role || ctx.me.role === role)
    .filter(() => ctx.me.role !== 'ingest')
    .map(([view, label]) => h('a', { href: route(view), class: current === view ? 'on' : null, 'data-view': view }, t(label))));
  const scope = ctx.me.communities ? ctx.me.communities.join(', ') : t('who.all');
  fill(who, h('span', { class: 'key-name' }, ctx.me.name || ctx.me.id), ' · ',
    h('span', { class: 'key-role' }, t(`who.role.${ctx.me.role}`)), ' · ',
    h('span', { class: 'key-scope' }, ctx.me.open ? t('who.open') : scope));
}

function signIn(view) {
  fill(view, h('form', { class: 'panel signin', id: 'signin', onsubmit: async (ev) => {
    ev.preventDefault();
    const token = ev.target.elements.key.value.trim();
    setKey(token);
    await guarded(async () => {
      await whoami();
      if (!ctx.me) throw new ApiError(401, 'unauthorized', t('signin.hint'), 'key');
      await show();
    });
  } },
  h('h2', {}, t('signin.title')),
  h('p', { class: 'muted' }, t('signin.hint')),
  h('label', {}, t('signin.key'), h('input', { name: 'key', type: 'password', autocomplete: 'off', required: true })),
  h('p', {}, h('button', { type: 'submit' }, t('signin.go')))));
}

async function show() {
  const view = document.getElementById('view');
  header();
  if (!ctx.me) { stopAlerts(); document.getElementById('alerts').hidden = true; signIn(view); return; }
  if (ctx.me.role === 'ingest') { fill(view, h('p', {}, t('who.ingestOnly'))); return; }
  startAlerts();
  const { name, params } = parseHash();
  const mod = VIEWS[name] || search;
  fill(view, h('p', { class: 'loading' }, t('loading')));
  try {
    await mod.render(view, params, ctx, name);
  } catch (e) {
    showError(e);
    if (!view.childElementCount || view.querySelector('.loading')) fill(view, h('p', { class: 'empty' }, t('error.title')));
  }
}

// ---- live alerts: the API's long poll (`GET /v1/alerts?wait=`) ----

function stopAlerts() {
  if (alertLoop) { alertLoop.abort(); alertLoop = null; }
}

function startAlerts() {
  const panel = document.getElementById('alerts');
  panel.hidden = false;
  if (alertLoop) { drawAlerts(); return; }
  const controller = new AbortController();
  alertLoop = controller;
  alertState.items = [];
  alertState.caughtUp = false;
  drawAlerts();
  pollAlerts(controller.signal);
}

const alertState = { items: [], after: 0, caughtUp: false };

function drawAlerts() {
  const panel = document.getElementById('alerts');
  fill(panel, h('h3', {}, t('alerts.title'), ' ', h('span', { class: 'muted' }, `(${t('alerts.live')})`)),
    alertState.items.length === 0 ? h('p', { class: 'empty' }, t('alerts.none')) :
      h('ol', { id: 'alert-list' }, alertState.items.map((a) => h('li', { class: a.fresh ? 'new alert' : 'alert', 'data-event': a.event_id },
        h('div', {}, h('strong', {}, a.event ? a.event.subject : ''), ' · ', a.name),
        h('div', { class: 'muted' }, fmt(a.event ? a.event.ts : a.raised), ' · ', a.community),
        // A cluster's alert names no event id (its indexer gives it later): no link.
        a.event_id == null ? null : h('a', { href: route('event', { id: a.event_id }) }, `${t('subject.event')} #${a.event_id}`)))));
}

async function pollAlerts(signal) {
  alertState.after = null;
  while (!signal.aborted) {
    try {
      // First the newest 50 (not every alert ever raised), then those after them.
      const asked = alertState.after === null
        ? { latest: 50 }
        : { after: alertState.after, limit: 1000, wait: alertState.caughtUp ? '25s' : '0s' };
      const page = await api.get('/v1/alerts', asked, signal);
      // Alerts that arrive once the panel has caught up are new: highlighted.
      const arrived = page.alerts.map((a) => ({ ...a, fresh: alertState.caughtUp }));
      alertState.items = [...arrived.reverse(), ...alertState.items].slice(0, 50);
      const first = alertState.after === null;
      alertState.after = page.next_after ?? alertState.after ?? 0;
      if (first || page.alerts.length < 1000) alertState.caughtUp = true;
      if (page.alerts.length) drawAlerts();
    } catch (e) {
      if (signal.aborted) return;
      showError(e);
      await new Promise((r) => setTimeout(r, 5000));
    }
  }
}

// ---- wiring ----

// A key refused mid-session (revoked, expired): signed out, the refusal shown.
whenUnauthorized(() => {
  if (!ctx.me || ctx.me.open) return;
  setKey(''); ctx.me = null; ctx.communitiesCache = null; stopAlerts(); show();
});

document.getElementById('lang').addEventListener('click', () => { switchLang(); clearError(); show(); drawAlerts(); });
document.getElementById('signout').addEventListener('click', () => {
  setKey(''); ctx.me = null; ctx.communitiesCache = null; stopAlerts(); clearError(); show();
});
window.addEventListener('hashchange', () => { clearError(); show(); });
window.addEventListener('unhandledrejection', (ev) => showError(ev.reason || new Error('unhandled')));
window.addEventListener('error', (ev) => showError(ev.error || new Error(ev.message)));

(async () => {
  header();
  await guarded(whoami);
  await show();
})();
