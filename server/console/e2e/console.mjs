// Drives the investigator console in real headless Chromium over a running server
// (server/tests/console.rs starts it, loads the city, and passes this script its
// setup as JSON). Each step asserts on the page; a failed step saves a screenshot in
// `setup.out` and exits 1. Prints the timings measured in the browser.

import { chromium } from 'playwright-core';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const setup = JSON.parse(process.argv[2]);
const base = setup.base;
const HOUR = 3600 * 1000;
const timings = {};
const requests = [];

/** `2021-09-01T08:00` (a datetime-local value) in Beijing time. */
const local = (ms) => new Date(ms + 8 * HOUR).toISOString().slice(0, 16);
/** `2021-09-01 08:00:00` as the console shows a time. */
const shown = (ms) => new Date(ms + 8 * HOUR).toISOString().slice(0, 19).replace('T', ' ');
const digits = (s) => s.replace(/\D/g, '');
// The keyed flows range over the planted city; the open check needs none.
const range = setup.from ? { from: local(setup.from), to: local(setup.to) } : {};

function assert(ok, message) {
  if (!ok) throw new Error(`assertion failed: ${message}`);
}

const profile = mkdtempSync(join(tmpdir(), 'sightline-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: setup.chromium,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1366, height: 768 },
  locale: 'zh-CN',
  // Not Beijing: the console must show Beijing time whatever the browser's zone.
  timezoneId: 'America/New_York',
  acceptDownloads: true,
});
context.on('request', (r) => requests.push(r.url()));
if (process.env.SIGHTLINE_E2E_DEBUG) {
  const t0 = Date.now();
  context.on('request', (r) => console.log(Date.now() - t0, 'request', r.method(), r.url()));
  context.on('requestfinished', (r) => console.log(Date.now() - t0, 'finished', r.url()));
  context.on('requestfailed', (r) => console.log(Date.now() - t0, 'failed', r.url(), r.failure()?.errorText));
}
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(30_000);
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));
// Anything the Content-Security-Policy blocked (an inline style, eval, another origin).
page.on('console', (m) => { if (/Content.Security.Policy/i.test(m.text())) pageErrors.push(m.text()); });

let failed = false;
async function step(name, work) {
  const started = Date.now();
  try {
    await work();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failed = true;
    const file = join(setup.out, `${name.replace(/[^a-z0-9]+/gi, '-')}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => {});
    const banner = await page.locator('#error').textContent().catch(() => '');
    console.log(`FAIL ${name}: ${e.message}\n     error banner: ${banner}\n     screenshot: ${file}`);
    throw e;
  }
}

// A fresh load of the page each time (a new query string), so nothing of the
// previous view is waited on by mistake; the key stays in the tab's session.
let loads = 0;
const go = async (hash) => {
  loads += 1;
  await page.goto(`${base}/?load=${loads}${hash}`);
};
const rows = (table) => page.locator(`${table} tbody tr`);
const hashOf = (view, params) => `#/${view}?${new URLSearchParams(params)}`;

/** The counts chart as uPlot drew it (a canvas and uPlot's legend, no hand-drawn SVG):
 * a series per key of the table below it, and under the cursor the bucket's Beijing
 * time and each key's count as the table has them. Returns the keys. */
async function countsChart(per) {
  const chart = page.locator('#counts-chart .uplot');
  await chart.locator('canvas').waitFor();
  assert(await page.locator('#counts-chart svg').count() === 0, 'no hand-drawn chart');
  const [time, ...keys] = await chart.locator('.u-legend .u-series .u-label').allTextContents();
  const table = await rows('#counts-table').evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  const tableKeys = [...new Set(table.map((r) => r[1]))];
  assert(keys.length === tableKeys.length && tableKeys.every((k) => keys.includes(k)), `series ${keys} for keys ${tableKeys}`);
  assert(time === '时间' || time === 'Time', time);
  const box = await chart.locator('.u-over').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height - 2);
  const shape = per === 'hour' ? /^\d{4}-\d{2}-\d{2} \d{2}:00$/ : /^\d{4}-\d{2}-\d{2}$/;
  const value = chart.locator('.u-legend .u-series .u-value');
  await page.waitForFunction(([re]) => new RegExp(re).test(document.querySelector('#counts-chart .u-legend .u-series .u-value')?.textContent || ''), [shape.source]);
  const [at, ...counts] = await value.allTextContents();
  const times = table.map((r) => r[0]).sort();
  assert(at >= times[0].slice(0, at.length) && at <= times.at(-1).slice(0, at.length), `${at} within ${times[0]} – ${times.at(-1)}`);
  keys.forEach((k, i) => {
    const row = table.find((r) => r[0].startsWith(per === 'hour' ? `${at}:00` : `${at} `) && r[1] === k);
    assert(digits(counts[i]) === (row ? digits(row[2]) : '0'), `${k} at ${at}: chart ${counts[i]}, table ${row}`);
  });
  return keys;
}

async function signIn(token, name) {
  await go('');
  await page.locator('#signin').waitFor();
  await page.fill('#signin input[name=key]', token);
  await page.click('#signin button[type=submit]');
  await page.locator('#who .key-name', { hasText: name }).waitFor();
}

async function signOut() {
  await page.click('#signout');
  await page.locator('#signin').waitFor();
}

/** An open server (`--no-auth`, never keyed): no sign-in at all. */
async function openServer() {
  await step('an open server (--no-auth, never keyed) needs no sign-in', async () => {
    await go('#/search');
    await page.locator('#search-form').waitFor();
    assert(await page.locator('#signin').count() === 0, 'no sign-in form');
    assert(await page.locator('#signout').isHidden(), 'nothing to sign out of');
    const who = await page.locator('#who').textContent();
    assert(who.includes('anonymous') && who.includes('--no-auth'), who);
    assert(await page.locator('#nav a[data-view=audit]').count() === 1, 'an admin: audit offered');
    await page.fill('#search-form input[name=q]', setup.long);
    await page.selectOption('#search-form select[name=mode]', 'exact');
    await page.click('#search-form button[type=submit]');
    await rows('#search-table').first().waitFor();
  });
}

/** A keyed server: every flow, as investigators, an admin and an outsider. */
async function keyedServer() {
  await step('a wrong key is refused with the API message', async () => {
    await go('');
    await page.locator('#signin').waitFor();
    await page.fill('#signin input[name=key]', 'sl_00000000_0000');
    await page.click('#signin button[type=submit]');
    await page.locator('#error:not([hidden])').waitFor();
    const text = await page.locator('#error').textContent();
    assert(text.includes('401') && text.includes('unknown or revoked API key'), text);
    assert(await page.locator('#signin').isVisible(), 'still signing in');
  });

  await step('sign in with a scoped key: name, role, communities; no audit', async () => {
    await signIn(setup.keys.detective, 'detective 7');
    const who = await page.locator('#who').textContent();
    assert(who.includes('研判'), who);
    for (const c of setup.scope) assert(who.includes(c), `${c} in ${who}`);
    assert(await page.locator('#nav a[data-view=search]').count() === 1, 'search offered');
    assert(await page.locator('#nav a[data-view=audit]').count() === 0, 'audit not offered to an investigator');
  });

  await step('fuzzy search of a misread plate finds the right one first', async () => {
    await go('#/search');
    await page.fill('#search-form input[name=q]', setup.misread);
    await page.selectOption('#search-form select[name=mode]', 'fuzzy');
    const t0 = Date.now();
    await page.click('#search-form button[type=submit]');
    await rows('#search-table').first().waitFor();
    timings.search_to_first_result_ms = Date.now() - t0;
    const first = rows('#search-table').first();
    assert((await first.locator('td').nth(0).textContent()) === setup.long, await first.textContent());
    assert(digits(await first.locator('td').nth(2).textContent()) === String(setup.long_sightings), await first.textContent());
    await first.locator('a').click();
    await page.locator('#subject-name', { hasText: setup.long }).waitFor();
  });

  await step('a plate typed with a separator and spaces, any kind, is found', async () => {
    await go('#/search');
    // `苏E·…` with a full-width space: a plate for the vehicle kinds, no pattern for
    // the face ids (once a 400 for the whole search).
    const typed = `${setup.long.slice(0, 2)}·　${setup.long.slice(2).toLowerCase()}`;
    await page.fill('#search-form input[name=q]', typed);
    await page.selectOption('#search-form select[name=kind]', '');
    await page.selectOption('#search-form select[name=mode]', 'exact');
    await page.click('#search-form button[type=submit]');
    await rows('#search-table').first().waitFor();
    assert((await rows('#search-table').first().locator('td').nth(0).textContent()) === setup.long, typed);
    assert(await page.locator('#error:not([hidden])').count() === 0, 'no error banner');
    // A wildcard (full width, from a Chinese input method) with the default mode.
    await page.fill('#search-form input[name=q]', `${setup.long.slice(0, -1)}？`);
    await page.selectOption('#search-form select[name=mode]', 'fuzzy');
    await page.click('#search-form button[type=submit]');
    await page.locator('#search-table td', { hasText: setup.long }).first().waitFor();
    assert(await page.locator('#error:not([hidden])').count() === 0, 'no error banner');
  });

  await step('a 5,000-sighting trajectory pages with the cursor', async () => {
    const t0 = Date.now();
    await go(hashOf('subject', { kind: 'vehicle', subject: setup.long, ...range, limit: '1000' }));
    await page.locator('#trajectory-table[data-page="1"]').waitFor();
    await page.locator('#next-page:not([disabled])').waitFor();
    timings.subject_page_5000_interactive_ms = Date.now() - t0;
    assert(await page.locator('#timeline svg rect.mark').count() === 1000, 'a timeline mark per sighting of the page');
    let total = await rows('#trajectory-table').count();
    let lastId = Number(await rows('#trajectory-table').last().locator('td').first().textContent());
    for (let n = 2; n <= 6; n++) {
      await page.click('#next-page');
      await page.locator(`#trajectory-table[data-page="${n}"]`).waitFor();
      const firstTime = await rows('#trajectory-table').first().locator('td').nth(1).textContent();
      assert(firstTime >= shown(setup.first_pass), firstTime);
      total += await rows('#trajectory-table').count();
      const id = Number(await rows('#trajectory-table').first().locator('td').first().textContent());
      assert(id !== lastId, 'a new page');
      lastId = id;
    }
    assert(total === setup.long_sightings, `${total} rows over 6 pages`);
    assert(await page.locator('#next-page[disabled]').count() === 1, 'no page after the last');
    await page.click('#prev-page');
    await page.locator('#trajectory-table[data-page="5"]').waitFor();
    // The page is in the address: a reload shows it again, its first row the same.
    const firstId = await rows('#trajectory-table').first().locator('td').first().textContent();
    await page.reload();
    await page.locator('#trajectory-table[data-page="5"]').waitFor();
    const again = await rows('#trajectory-table').first().locator('td').first().textContent();
    assert(again === firstId, `page 5 after a reload starts at ${again}, not ${firstId}`);
    await page.click('#prev-page');
    await page.locator('#trajectory-table[data-page="4"]').waitFor();
  });

  await step('pictures: thumbnails, enlarged on a click; times in Beijing time', async () => {
    await go(hashOf('subject', { kind: 'vehicle', subject: setup.long, ...range, limit: '100' }));
    await page.locator('#trajectory-table[data-page="1"]').waitFor();
    const firstTime = await rows('#trajectory-table').first().locator('td').nth(1).textContent();
    assert(firstTime === shown(setup.first_pass), `${firstTime} is ${shown(setup.first_pass)} Beijing time`);
    await page.locator('#trajectory-table img.loaded').nth(5).waitFor();
    const width = await page.locator('#trajectory-table img.loaded').first().evaluate((img) => img.naturalWidth);
    assert(width === 64, `the picture decoded (${width} px wide)`);
    await page.screenshot({ path: setup.screenshot });
    await page.locator('#trajectory-table img.loaded').first().click();
    await page.locator('#lightbox:not([hidden]) img').waitFor();
    await page.click('#lightbox');
    await page.locator('#lightbox[hidden]').waitFor({ state: 'attached' });
    // From the keyboard: focused, opened with Enter, closed with Escape.
    await page.locator('#trajectory-table img.loaded').first().focus();
    await page.keyboard.press('Enter');
    await page.locator('#lightbox:not([hidden]) img').waitFor();
    await page.keyboard.press('Escape');
    await page.locator('#lightbox[hidden]').waitFor({ state: 'attached' });
    assert(await page.evaluate(() => document.activeElement?.tagName) === 'IMG', 'the focus back on the picture');
  });

  await step('CSV export holds the whole trajectory', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
    const text = readFileSync(await download.path(), 'utf8');
    const lines = text.trim().split(/\r\n/);
    assert(lines.length === setup.long_sightings + 1, `${lines.length} lines`);
    assert(lines[1].includes(shown(setup.first_pass)), lines[1]);
  });

  await step('the planted companion tops its leader\'s companions; side by side', async () => {
    await go(hashOf('companions', { kind: 'vehicle', subject: setup.companion.leader, ...range, window: '60s', scope: 'device', candidate_kind: 'vehicle', min_count: '2', limit: '20' }));
    await rows('#companions-table').first().waitFor();
    const top = await rows('#companions-table').first().locator('td').nth(1).textContent();
    assert(top === setup.companion.follower, `top companion ${top}`);
    await rows('#companions-table').first().locator('button.compare').click();
    await rows('#side-table').first().waitFor();
    const n = await rows('#side-table').count();
    assert(n >= 2, `${n} matched pairs`);
    for (const r of await rows('#side-table').all()) {
      const cells = await r.locator('td').allTextContents();
      assert(cells[1] === cells[3], `same device: ${cells}`);
      assert(Math.abs(Number(cells[5])) <= 60, `within the window: ${cells}`);
    }
    await rows('#companions-table').first().locator('a').click();
    await page.locator('#subject-name', { hasText: setup.companion.follower }).waitFor();
  });

  await step('companions of a p99 plate', async () => {
    const t0 = Date.now();
    await go(hashOf('companions', { kind: 'vehicle', subject: setup.p99, ...range, window: '60s', scope: 'device', min_count: '2', limit: '50' }));
    await page.locator('#companions-results section').waitFor();
    timings.companions_p99_ms = Date.now() - t0;
  });

  await step('an API error is shown with its message and field', async () => {
    await page.fill('#companions-form input[name=window]', '5 minutes');
    await page.click('#companions-form button[type=submit]');
    await page.locator('#error:not([hidden])').waitFor();
    const text = await page.locator('#error').textContent();
    assert(text.includes('invalid_parameter') && text.includes('window'), text);
    assert(await page.locator('#error .field').textContent() === 'window', 'the field named');
    assert(await page.locator('#companions-form input[name=window][aria-invalid=true]').count() === 1, 'the field marked');
  });

  await step('a planted collision (3 of 3 conditions)', async () => {
    await go('#/collision');
    await page.click('#add-condition');
    const conds = setup.collision.conditions;
    for (let i = 0; i < conds.length; i++) {
      const [community, from, to] = conds[i];
      await page.fill(`#conditions input[name="conditions[${i}].communities"]`, community);
      await page.fill(`#conditions input[name="conditions[${i}].from"]`, local(from));
      await page.fill(`#conditions input[name="conditions[${i}].to"]`, local(to));
    }
    await page.fill('#collision-form input[name=min_conditions]', String(conds.length));
    await page.click('#collision-form button[type=submit]');
    await rows('#collision-table').first().waitFor();
    const found = await page.locator('#collision-table tbody tr td:first-child').allTextContents();
    for (const s of setup.collision.subjects) assert(found.includes(s), `${s} in ${found}`);
    await page.locator('#collision-table a', { hasText: setup.collision.subjects[0] }).first().click();
    await page.locator('#subject-name', { hasText: setup.collision.subjects[0] }).waitFor();
  });

  await step('community views: frequency, nocturnal, first seen, counts chart', async () => {
    const c = setup.scope[0];
    await go(hashOf('community', { tab: 'frequency', community: c, kind: 'vehicle', ...range, min_days: '3' }));
    await rows('#community-table').first().waitFor();
    await go(hashOf('community', { tab: 'counts', kind: '', ...range, by: 'community', per: 'day' }));
    const keys = await countsChart('day');
    assert(keys.length === setup.scope.length && !keys.includes(setup.outside), `only the key's communities: ${keys}`);
    await go(hashOf('community', { tab: 'counts', kind: 'vehicle', ...range, by: 'kind', per: 'hour' }));
    assert((await countsChart('hour')).join() === 'vehicle', 'one series per kind');
    await go(hashOf('community', { tab: 'first-seen', community: c, kind: 'vehicle', ...range, lookback: '1d' }));
    await page.locator('#community-results section').waitFor();
    await go(hashOf('community', { tab: 'nocturnal', kind: 'face', ...range }));
    await page.locator('#community-results section').waitFor();
  });

  await step('a watchlist raises a live alert after an ingest', async () => {
    await go('#/watch');
    await page.fill('#watch-form input[name=name]', 'case 7');
    await page.fill('#watch-form input[name=reason]', 'stolen vehicle');
    await page.fill('#watch-form input[name="entries[0].value"]', setup.live.subject);
    await page.click('#watch-form button[type=submit]');
    await page.locator('#watch-table td', { hasText: 'case 7' }).waitFor();
    const stored = await fetch(`${base}/v1/events`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${setup.keys.admin}`, 'Content-Type': 'application/x-ndjson' },
      body: JSON.stringify({ ts: Date.now(), community: setup.live.community, device: setup.live.device, kind: 'vehicle', subject: setup.live.subject, direction: 'in' }),
    }).then((r) => r.json());
    assert(stored.stored === 1 && stored.alerts === 1, JSON.stringify(stored));
    const alert = page.locator('#alert-list li.new', { hasText: setup.live.subject });
    await alert.waitFor({ timeout: 40_000 });
    await alert.locator('a').click();
    await page.locator('#event a', { hasText: setup.live.subject }).waitFor();
  });

  await step('language switch: English, then Chinese again', async () => {
    await go('#/search');
    await page.click('#lang');
    await page.locator('#nav a[data-view=search]', { hasText: 'Search' }).waitFor();
    assert((await page.locator('#search-form h2').textContent()) === 'Search subjects', 'view relabelled');
    await page.click('#lang');
    await page.locator('#nav a[data-view=search]', { hasText: '检索' }).waitFor();
  });

  await step('an admin reads the audit log, filtered by key', async () => {
    await signOut();
    await signIn(setup.keys.admin, 'hq');
    const id = setup.keys.detective.split('_')[1];
    await go('#/audit');
    await rows('#audit-table').first().waitFor();
    const newest = await page.locator('#audit-table tbody td:nth-child(4)').allTextContents();
    assert(newest.includes('/v1/whoami'), `the admin's own sign-in among the newest: ${newest.slice(-5)}`);
    await page.fill('#audit-form input[name=after]', '0');
    await page.fill('#audit-form input[name=key]', id);
    await page.fill('#audit-form input[name=endpoint]', '/v1/search');
    await page.click('#audit-form button[type=submit]');
    // The unfiltered table already holds /v1/search rows: wait for the filtered one to
    // replace it (every row the key's), not for any such row.
    await page.waitForFunction((key) => {
      const cells = [...document.querySelectorAll('#audit-table tbody td:nth-child(3)')];
      return cells.length > 0 && cells.every((c) => c.textContent === key);
    }, id);
    const keys = await page.locator('#audit-table tbody td:nth-child(3)').allTextContents();
    const endpoints = await page.locator('#audit-table tbody td:nth-child(4)').allTextContents();
    assert(keys.length > 0 && keys.every((k) => k === id), keys.join(','));
    assert(endpoints.every((e) => e === '/v1/search'), endpoints.join(','));
  });

  await step('a key scoped elsewhere sees none of it', async () => {
    await signOut();
    await signIn(setup.keys.outsider, 'outsider');
    await go(hashOf('search', { q: setup.misread, mode: 'fuzzy' }));
    await page.locator('#search-results .empty').waitFor();
    await go(hashOf('subject', { kind: 'vehicle', subject: setup.long, ...range }));
    await page.locator('#trajectory .empty').waitFor();
    await go(hashOf('community', { tab: 'counts', kind: '', ...range, by: 'community', per: 'day' }));
    const keys = await countsChart('day');
    assert(keys.join() === setup.outside, `only its own community counted: ${keys}`);
    await go(hashOf('companions', { kind: 'vehicle', subject: setup.long, ...range, min_count: '1' }));
    await page.locator('#companions-results .empty').waitFor();
    await page.locator('#alerts').waitFor();
    const text = await page.locator('body').textContent();
    for (const s of [setup.live.subject, ...setup.scope]) {
      assert(!text.includes(s), `${s} shown to a key scoped to ${setup.outside}`);
    }
  });

  await step('a key revoked mid-session is signed out at its next request', async () => {
    const me = await (await fetch(`${base}/v1/whoami`, { headers: { Authorization: `Bearer ${setup.keys.outsider}` } })).json();
    const revoked = await fetch(`${base}/v1/keys/${me.id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${setup.keys.admin}` } });
    assert(revoked.ok, `revoked: ${revoked.status}`);
    // On the page as it is (no reload, which would ask whoami again): the next request
    // is refused 401, and the page signs out.
    await page.evaluate((hash) => { location.hash = hash; }, hashOf('search', { q: setup.long, mode: 'exact' }));
    await page.locator('#signin').waitFor();
    assert(await page.evaluate(() => sessionStorage.getItem('sightline.key')) === null, 'the key forgotten');
    assert(await page.locator('#who .key-name').count() === 0, 'no one shown signed in');
  });

}

/** A cluster's query node (`sightline cluster query`): the views it answers,
 * watchlists and the alert panel among them, as on `serve`. */
async function clusterNode() {
  await step('sign in on a query node with a scoped cluster key', async () => {
    await signIn(setup.keys.detective, 'detective 7');
    const who = await page.locator('#who').textContent();
    assert(who.includes('研判'), who);
    for (const c of setup.scope) assert(who.includes(c), `${c} in ${who}`);
    assert(await page.locator('#nav a[data-view=audit]').count() === 0, 'audit not offered to an investigator');
  });

  await step('the alert panel reads the node\'s alerts, without an error', async () => {
    await page.locator('#alerts .empty').waitFor();
    assert(await page.locator('#error:not([hidden])').count() === 0, 'no error banner');
  });

  await step('exact search finds the plate', async () => {
    await go('#/search');
    await page.fill('#search-form input[name=q]', setup.long);
    await page.selectOption('#search-form select[name=mode]', 'exact');
    await page.click('#search-form button[type=submit]');
    await rows('#search-table').first().waitFor();
    const first = rows('#search-table').first();
    assert((await first.locator('td').nth(0).textContent()) === setup.long, await first.textContent());
  });

  await step('a trajectory pages with the cursor, within the key\'s communities', async () => {
    await go(hashOf('subject', { kind: 'vehicle', subject: setup.long, ...range, limit: '1000' }));
    await page.locator('#trajectory-table[data-page="1"]').waitFor();
    let total = await rows('#trajectory-table').count();
    let n = 1;
    while (await page.locator('#next-page:not([disabled])').count() === 1) {
      n += 1;
      await page.click('#next-page');
      await page.locator(`#trajectory-table[data-page="${n}"]`).waitFor();
      total += await rows('#trajectory-table').count();
    }
    assert(total === setup.long_sightings, `${total} rows over ${n} pages`);
    assert(n === Math.ceil(setup.long_sightings / 1000), `${n} pages`);
    const text = await page.locator('#trajectory-table').textContent();
    assert(!text.includes(setup.outside), `a sighting of ${setup.outside} shown`);
  });

  await step('one event by its cluster id', async () => {
    const id = await rows('#trajectory-table').first().locator('td').first().textContent();
    await go(hashOf('event', { id }));
    await page.locator('#event a', { hasText: setup.long }).waitFor();
  });

  await step('counts chart: only the key\'s communities', async () => {
    await go(hashOf('community', { tab: 'counts', kind: '', ...range, by: 'community', per: 'day' }));
    const keys = await countsChart('day');
    assert(keys.length === setup.scope.length && !keys.includes(setup.outside), `only the key's communities: ${keys}`);
  });

  await step('the watchlist view makes, lists and deletes a watchlist on the node', async () => {
    await go('#/watch');
    await page.fill('#watch-form input[name=name]', 'cluster case');
    await page.fill('#watch-form input[name=reason]', 'stolen vehicle');
    await page.fill('#watch-form input[name="entries[0].value"]', setup.long);
    await page.click('#watch-form button[type=submit]');
    const row = page.locator('#watch-table tr', { hasText: 'cluster case' });
    await row.waitFor();
    // Two presses: the first asks to confirm.
    await row.locator('button').click();
    await row.locator('button', { hasText: /确认|again/ }).waitFor();
    await row.locator('button').click();
    await row.waitFor({ state: 'detached' });
    assert(await page.locator('#view .not-here').count() === 0, 'no note: the node has watchlists');
    assert(await page.locator('#error:not([hidden])').count() === 0, 'no error banner');
  });

  await step('an admin reads this node\'s audit log', async () => {
    await signOut();
    await signIn(setup.keys.admin, 'hq');
    await go('#/audit');
    await rows('#audit-table').first().waitFor();
    const endpoints = await page.locator('#audit-table tbody td:nth-child(4)').allTextContents();
    assert(endpoints.includes('/v1/whoami') && endpoints.includes('/v1/trajectory'), `the node's entries: ${endpoints.slice(-5)}`);
  });
}

try {
  const flows = { open: openServer, cluster: clusterNode };
  await (flows[setup.mode] || keyedServer)();
  await step('no request left 127.0.0.1; no script error', async () => {
    const outside = requests.filter((u) => !u.startsWith(`${base}/`) && !u.startsWith('blob:') && !u.startsWith('data:'));
    assert(outside.length === 0, `requests elsewhere: ${outside.join(' ')}`);
    assert(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
  });
} catch {
  failed = true;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(`TIMINGS ${JSON.stringify(timings)}`);
process.exit(failed ? 1 : 0);
