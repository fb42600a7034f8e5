import { inspect } from 'node:util';

export interface WaitOptions {
  /** Give up after this long (default 30 s: room for a slow, shared machine). */
  timeoutMs?: number;
  /** Time between the end of one probe and the start of the next (default 50 ms). */
  intervalMs?: number;
  /**
   * A probe that throws is "not yet" rather than the end of the wait (a server still
   * starting, a connection refused); the error is then the last value seen. Off by default:
   * an error from the probe ends the wait at once, so a probe can fail fast on a state that
   * can never turn into the one awaited.
   */
  retryErrors?: boolean;
}

/** What a wait saw last before it gave up. */
export class WaitTimeoutError extends Error {
  override readonly name = 'WaitTimeoutError';

  constructor(
    readonly description: string,
    readonly timeoutMs: number,
    readonly last: { value: unknown } | { error: unknown } | undefined,
  ) {
    super(`timed out after ${timeoutMs} ms waiting for ${description}; ${describeLast(last)}`);
  }
}

function describeLast(last: WaitTimeoutError['last']): string {
  if (!last) return 'no probe finished';
  const text =
    'error' in last
      ? `last error: ${last.error instanceof Error ? last.error.message : inspect(last.error)}`
      : `last value: ${inspect(last.value, { depth: 4, breakLength: Infinity })}`;
  return text.length > 2000 ? `${text.slice(0, 2000)}...` : text;
}

type Done<T> = Exclude<T, null | undefined | false>;

/**
 * The one poller of the test harness. Calls `probe` until its value is done, then returns
 * that value: by default any value but `null`, `undefined` and `false`; with `until`, a value
 * that `until` accepts. Probes run one at a time, `intervalMs` apart. After `timeoutMs` it
 * throws a `WaitTimeoutError` that names `description` (say what is awaited: "job x to
 * complete") and the last value or error seen, even while a probe is still pending.
 */
export async function waitUntil<T>(
  description: string,
  probe: () => T | Promise<T>,
  options: WaitOptions & { until: (value: T) => boolean },
): Promise<T>;
export async function waitUntil<T>(
  description: string,
  probe: () => T | Promise<T>,
  options?: WaitOptions,
): Promise<Done<T>>;
export async function waitUntil<T>(
  description: string,
  probe: () => T | Promise<T>,
  options: WaitOptions & { until?: (value: T) => boolean } = {},
): Promise<T> {
  const { timeoutMs = 30_000, intervalMs = 50, retryErrors = false } = options;
  const done = options.until ?? ((value: T) => value !== null && value !== undefined && value !== false);
  let last: WaitTimeoutError['last'];
  let timer: NodeJS.Timeout | undefined;
  // No timer at all for an unbounded wait: setTimeout would clamp Infinity to 1 ms and warn.
  const expired = new Promise<never>((_, reject) => {
    if (Number.isFinite(timeoutMs))
      timer = setTimeout(() => reject(new WaitTimeoutError(description, timeoutMs, last)), timeoutMs);
  });
  const attempt = async (): Promise<{ ok: true; value: T } | { ok: false }> => {
    try {
      const value = await probe();
      last = { value };
      return done(value) ? { ok: true, value } : { ok: false };
    } catch (error) {
      if (!retryErrors) throw error;
      last = { error };
      return { ok: false };
    }
  };
  try {
    for (;;) {
      const outcome = await Promise.race([attempt(), expired]);
      if (outcome.ok) return outcome.value;
      await Promise.race([new Promise((r) => setTimeout(r, intervalMs)), expired]);
    }
  } finally {
    clearTimeout(timer);
  }
}
