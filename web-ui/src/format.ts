// Numbers, sizes, times and durations as the dashboard shows them.

const int = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const one = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

/** 1234567 → "1,234,567". */
export const count = (n: number) => int.format(n);

/** Events per second, compact: 2.5 M/s, 12.3 k/s, 950/s. */
export function rate(perSecond: number): string {
  const n = Math.max(0, perSecond);
  if (n >= 1e6) return `${one.format(n / 1e6)} M/s`;
  if (n >= 1e3) return `${one.format(n / 1e3)} k/s`;
  return `${int.format(n)}/s`;
}

/** Bytes: 1.5 MiB. */
export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? int.format(v) : one.format(v)} ${units[u]}`;
}

/** A duration in ms: 850 ms, 12.3 s, 4 min 05 s, 2 h 03 min. */
export function duration(ms: number): string {
  if (ms < 1000) return `${int.format(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${one.format(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, "0")} min`;
  return `${int.format(Math.floor(h / 24))} d`;
}

/** Watermarks at or past this (the largest time a `Date` holds) mean the end of a
 * bounded input: the server sends the largest i64 for it. */
export const END_OF_TIME = 8.64e15;

/** ms since the epoch as a UTC time: 2001-01-01 00:00:00. */
export function time(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return "—";
  if (ms >= END_OF_TIME) return "end of input";
  if (ms <= -END_OF_TIME) return "—";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "");
}

/** How far `watermark` is behind `now` (ms), or null when there is none or the input
 * has ended. */
export function lag(now: number, watermark: number | null | undefined): number | null {
  if (watermark == null || watermark >= END_OF_TIME) return null;
  return Math.max(0, now - watermark);
}

/** Busy or backpressured ms per second as a percentage. */
export const percent = (msPerSecond: number) => `${int.format(Math.min(100, msPerSecond / 10))} %`;
