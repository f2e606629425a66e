// Times as investigators read them: Beijing time (Asia/Shanghai, UTC+8, no summer
// time), whatever the browser's own zone. The API answers RFC 3339 with +08:00 and
// takes it back the same way.

const OFFSET_MS = 8 * 3600 * 1000;
export const DAY_MS = 24 * 3600 * 1000;

/** Epoch ms of an API time (RFC 3339 text or a number). */
export function ms(value) {
  return typeof value === 'number' ? value : Date.parse(value);
}

/** `2021-09-01 08:00:00` in Beijing time. */
export function fmt(value) {
  if (value === null || value === undefined || value === '') return '';
  const t = ms(value);
  if (Number.isNaN(t)) return String(value);
  return new Date(t + OFFSET_MS).toISOString().slice(0, 19).replace('T', ' ');
}

/** The Beijing date `2021-09-01` of a time. */
export function date(value) {
  return fmt(value).slice(0, 10);
}

/** Milliseconds since Beijing midnight. */
export function timeOfDay(value) {
  return ((ms(value) + OFFSET_MS) % DAY_MS + DAY_MS) % DAY_MS;
}

/** Beijing midnight (epoch ms) of the day holding `t`. */
export function midnight(t) {
  return Math.floor((t + OFFSET_MS) / DAY_MS) * DAY_MS - OFFSET_MS;
}

/** A `datetime-local` input's value (`2021-09-01T08:00`) for epoch ms, in Beijing time. */
export function inputValue(t) {
  return new Date(t + OFFSET_MS).toISOString().slice(0, 16);
}

/** RFC 3339 for the API from a `datetime-local` value read as Beijing time ('' stays ''). */
export function apiTime(input) {
  if (!input) return '';
  const withSeconds = input.length === 16 ? `${input}:00` : input;
  return `${withSeconds}+08:00`;
}

/** The default range: the last 30 days up to the end of today, Beijing time. */
export function defaultRange() {
  const end = midnight(Date.now()) + DAY_MS;
  return { from: inputValue(end - 31 * DAY_MS), to: inputValue(end) };
}
