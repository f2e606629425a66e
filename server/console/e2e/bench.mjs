// The console's latency budgets measured in headless Chromium against a running
// server (BENCHMARKS.md, "Investigator console"): search to first result, a long
// subject page until it is interactive, companions of a p99 plate. Setup reads go
// straight to the API; every timed step is the page doing what an investigator does.
//
//   node bench.mjs --base http://127.0.0.1:8080 --misread 苏E4UPD4 --plate 苏E4UP04 \
//     [--key sl_…] [--runs 7] [--chromium /usr/bin/chromium]

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, a, i, all) => (
  a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []));
const base = args.base || 'http://127.0.0.1:8080';
const runs = Number(args.runs || 7);
const headers = args.key ? { Authorization: `Bearer ${args.key}` } : {};
const HOUR = 3600 * 1000;
const local = (ms) => new Date(ms + 8 * HOUR).toISOString().slice(0, 16);

async function api(path) {
  const r = await fetch(`${base}${path}`, { headers });
  const body = await r.json();
  if (!r.ok) throw new Error(`${path}: ${JSON.stringify(body)}`);
  return body;
}

// The store's range: the plate's whole history, then the month before its last sighting.
const hit = (await api(`/v1/search?q=${encodeURIComponent(args.plate)}&kind=vehicle`)).subjects[0];
if (!hit) throw new Error(`${args.plate} is not in the store`);
const to = Date.parse(hit.last) + 1, from = to - 31 * 24 * HOUR;
const range = { from: local(from), to: local(to + 60_000) };
const q = (o) => new URLSearchParams(o).toString();

// The p99 vehicle: sightings per plate summed over every community's frequency list.
const counts = new Map();
const span = { from: new Date(from).toISOString(), to: new Date(to).toISOString() };
// Every community that has events (the catalog need not list them).
const perCommunity = await api(`/v1/counts?${q({ ...span, by: 'community', per: 'day' })}`);
for (const code of new Set(perCommunity.counts.map((r) => r.key))) {
  const f = await api(`/v1/frequency?${q({ community: code, kind: 'vehicle', ...span, min_count: 1, limit: 10000 })}`);
  for (const s of f.subjects) counts.set(s.subject, (counts.get(s.subject) || 0) + s.count);
}
const ranked = [...counts.entries()].sort((a, b) => a[1] - b[1]);
const [p99, p99Count] = ranked[Math.floor(ranked.length * 0.99)] || [args.plate, hit.count];
// The plate whose history is nearest 5,000 sightings.
const [near5000, near5000Count] = ranked.reduce((best, r) => (Math.abs(r[1] - 5000) < Math.abs(best[1] - 5000) ? r : best), [args.plate, hit.count]);

const profile = mkdtempSync(join(tmpdir(), 'sightline-bench-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: args.chromium || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1366, height: 768 },
});
const page = context.pages()[0] || await context.newPage();
if (args.key) await page.addInitScript((k) => sessionStorage.setItem('sightline.key', k), args.key);
let loads = 0;
const go = (hash) => page.goto(`${base}/?bench=${++loads}${hash}`);

async function measure(name, work) {
  const times = [];
  for (let i = 0; i < runs; i++) times.push(await work());
  times.sort((a, b) => a - b);
  const result = { median_ms: times[Math.floor(times.length / 2)], max_ms: times[times.length - 1], runs };
  console.log(name.padEnd(44), JSON.stringify(result));
  return result;
}

const out = {};
out.search_to_first_result = await measure(`search ${args.misread} (fuzzy) to first row`, async () => {
  await go('#/search');
  await page.fill('#search-form input[name=q]', args.misread);
  const t0 = Date.now();
  await page.click('#search-form button[type=submit]');
  await page.locator('#search-table tbody tr').first().waitFor();
  return Date.now() - t0;
});
for (const [name, plate, count, limit] of [
  ['subject_page_5000', near5000, near5000Count, '100'],
  ['subject_page_busiest', args.plate, hit.count, '100'],
  ['subject_page_busiest_1000_rows', args.plate, hit.count, '1000'],
]) {
  out[name] = await measure(`subject ${plate} (${count} sightings), ${limit}/page`, async () => {
    const t0 = Date.now();
    await go(`#/subject?${q({ kind: 'vehicle', subject: plate, ...range, limit })}`);
    await page.locator('#trajectory-table tbody tr').first().waitFor();
    await page.locator('#timeline svg').waitFor();
    await page.locator('#page-no').waitFor();
    return Date.now() - t0;
  });
}
out.companions_p99 = await measure(`companions of p99 plate ${p99} (${p99Count})`, async () => {
  const t0 = Date.now();
  await go(`#/companions?${q({ kind: 'vehicle', subject: p99, ...range, window: '60s', scope: 'device', min_count: '2', limit: '50' })}`);
  await page.locator('#companions-results section').waitFor();
  return Date.now() - t0;
});
await context.close();
rmSync(profile, { recursive: true, force: true });
console.log(JSON.stringify(out));
