import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * Short-lived Redis markers that keep the janitor's file deletion away from live jobs.
 *
 * While the janitor, a DELETE or a worker discarding a stale run's output (`job-deletion.ts`)
 * removes the files of a job key, it holds the tombstone `sweeping:<key>`; `JobStore.claim` and `retainUpload` wait while one exists. So a job
 * re-created with the same id, or a new job taking a shared upload, only starts once the
 * old files are gone, and its own files are never in the way of a deletion. Tombstones
 * expire by themselves, so a janitor killed mid-way blocks nobody for long.
 */
export const TOMBSTONE_TTL_MS = 60_000;

/** Longest a claim or retain waits for a tombstone before answering 503 (the deletion takes ms). */
export const TOMBSTONE_WAIT_MS = 5_000;

export function sweepingKey(key: string): string {
  return `sweeping:${key}`;
}

/** A random owner token, so only the holder of a lock or tombstone releases it. */
export function lockToken(): string {
  return randomBytes(12).toString('hex');
}

// Deletes the key only if it still holds our token. KEYS: key. ARGV: token.
const RELEASE_IF_OWNER = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

// Extends the key only if it still holds our token. KEYS: key. ARGV: token, ttl ms.
const EXTEND_IF_OWNER = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;

// The same for many keys at once. KEYS: keys. ARGV: token.
const RELEASE_MANY_IF_OWNER = `
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then n = n + redis.call('DEL', k) end
end
return n
`;

export async function releaseIfOwner(redis: Redis, key: string, token: string): Promise<boolean> {
  return ((await redis.eval(RELEASE_IF_OWNER, 1, key, token)) as number) === 1;
}

/** Releases every key that still holds `token`, in one round trip; returns how many. */
export async function releaseManyIfOwner(
  redis: Redis,
  keys: readonly string[],
  token: string,
): Promise<number> {
  if (keys.length === 0) return 0;
  return (await redis.eval(RELEASE_MANY_IF_OWNER, keys.length, ...keys, token)) as number;
}

/**
 * Calls `attempt` until it returns something other than `busy`, waiting a little between
 * tries; `onTimeout` builds the error thrown after `waitMs`.
 */
export async function retryWhileBusy<T>(
  attempt: () => Promise<T | 'busy'>,
  onTimeout: () => Error,
  waitMs = TOMBSTONE_WAIT_MS,
): Promise<T> {
  const deadline = Date.now() + waitMs;
  for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
    const result = await attempt();
    if (result !== 'busy') return result;
    if (Date.now() >= deadline) throw onTimeout();
    await new Promise((r) => setTimeout(r, delay));
  }
}

/**
 * A lock with an expiry and an owner token (SET NX PX), so one janitor sweeps at a time
 * across replicas, and a janitor that dies holding it blocks the others only until it expires.
 */
export class RedisLock {
  private token: string | null = null;
  /** A token whose release did not reach Redis (it was away): freed at the next acquire. */
  private unreleased: string | null = null;

  constructor(
    private readonly redis: Redis,
    readonly key: string,
    readonly ttlMs: number,
  ) {}

  get held(): boolean {
    return this.token !== null;
  }

  async acquire(): Promise<boolean> {
    if (this.unreleased) {
      // Ours still, if it has not expired: without this, a sweep that ended while Redis was
      // away would keep every later one out until the lock's expiry.
      await releaseIfOwner(this.redis, this.key, this.unreleased);
      this.unreleased = null;
    }
    const token = lockToken();
    const ok = await this.redis.set(this.key, token, 'PX', this.ttlMs, 'NX');
    if (ok === 'OK') this.token = token;
    return ok === 'OK';
  }

  /** Pushes the expiry forward; false when the lock was lost (expired and maybe taken). */
  async extend(): Promise<boolean> {
    if (!this.token) return false;
    const ok =
      ((await this.redis.eval(EXTEND_IF_OWNER, 1, this.key, this.token, this.ttlMs)) as number) === 1;
    if (!ok) this.token = null;
    return ok;
  }

  async release(): Promise<void> {
    const token = this.token;
    this.token = null;
    if (!token) return;
    try {
      await releaseIfOwner(this.redis, this.key, token);
    } catch (err) {
      this.unreleased = token;
      throw err;
    }
  }
}

/** The lock that lets one janitor replica sweep at a time. */
export const SWEEP_LOCK_KEY = 'janitor:sweep_lock';

/** The last sweep's summary (JSON), written by the janitor, read by `GET /admin/stats`. */
export const LAST_SWEEP_KEY = 'janitor:last_sweep';
