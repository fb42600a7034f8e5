/**
 * A value loaded in the background and reused for `maxAgeMs`, so many scrapes cost one load.
 * Only one load runs at a time; a caller waits for a running one at most `waitMs` and then
 * takes the previous value (undefined before the first load).
 */
export class Refreshing<T> {
  private value: T | undefined;
  private loadedAt = 0;
  private pending: Promise<void> | null = null;

  constructor(
    private readonly load: () => Promise<T>,
    readonly maxAgeMs: number,
  ) {}

  async get(waitMs: number): Promise<T | undefined> {
    if (Date.now() - this.loadedAt >= this.maxAgeMs && !this.pending) {
      this.pending = this.load().then(
        (value) => {
          this.value = value;
          this.loadedAt = Date.now();
        },
        // A failed load keeps the previous value; the next call tries again.
        () => undefined,
      );
      void this.pending.finally(() => (this.pending = null));
    }
    if (this.pending) await within(this.pending, waitMs).catch(() => undefined);
    return this.value;
  }

  /** Seconds since the value was loaded, or null before the first load. */
  ageSeconds(): number | null {
    return this.loadedAt === 0 ? null : (Date.now() - this.loadedAt) / 1000;
  }
}

/** The promise's value, or a rejection after `ms`; the late outcome of `promise` is swallowed. */
export function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  promise.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
