/** How the console writes numbers, sizes, durations and times. */

const NBSP = '\u00a0';
export const NONE = '—';

const isNumber = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n);

export function bytes(n: unknown): string {
  if (!isNumber(n)) return NONE;
  if (n < 1000) return `${n}${NBSP}B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = n / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)}${NBSP}${units[unit]}`;
}

/** 2.04 → "2.0 s", 125 → "2:05", 3725 → "1:02:05". */
export function duration(seconds: unknown): string {
  if (!isNumber(seconds)) return NONE;
  if (seconds < 60) return `${seconds.toFixed(1)}${NBSP}s`;
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** Time until `iso`, coarse enough to read at a glance: "23 h 59 min left", "45 s left". */
export function timeLeft(iso: string, now = Date.now()): string {
  const ms = Date.parse(iso) - now;
  if (!Number.isFinite(ms)) return NONE;
  if (ms <= 0) return 'expired';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}${NBSP}s left`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min}${NBSP}min left`;
  const h = Math.floor(min / 60);
  if (h < 48) return `${h}${NBSP}h ${min % 60}${NBSP}min left`;
  return `${Math.floor(h / 24)} days left`;
}

export const percent = (p: number): string => `${Math.floor(p)}${NBSP}%`;

export function dateTime(iso: unknown): string {
  if (typeof iso !== 'string' || Number.isNaN(Date.parse(iso))) return NONE;
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/** Local wall-clock time with milliseconds, for the event log. */
export function clock(iso: unknown): string {
  const d = typeof iso === 'string' ? new Date(iso) : new Date();
  if (Number.isNaN(d.getTime())) return NONE;
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A level with one decimal and its unit: "-16.0 LUFS", "+3.2 dB". */
export function level(n: unknown, unit: string, signed = false): string {
  if (!isNumber(n)) return NONE;
  return `${signed && n > 0 ? '+' : ''}${n.toFixed(1)}${NBSP}${unit}`;
}

export function hertz(n: unknown): string {
  if (!isNumber(n) || n <= 0) return NONE;
  return n >= 1000 ? `${(n / 1000).toFixed(n % 1000 === 0 ? 0 : 1)}${NBSP}kHz` : `${n}${NBSP}Hz`;
}

export function channels(n: unknown): string {
  if (!isNumber(n) || n <= 0) return NONE;
  return n === 1 ? 'mono' : n === 2 ? 'stereo' : `${n} channels`;
}

export const text = (v: unknown): string =>
  typeof v === 'string' && v !== '' ? v : isNumber(v) ? String(v) : NONE;

export const capital = (t: string): string => t.charAt(0).toUpperCase() + t.slice(1);
