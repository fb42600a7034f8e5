import { randomBytes } from 'node:crypto';
import type { Redis } from './redis.js';

/**
 * Per-site pacing across every worker: at most `limit` downloads at once per site and at
 * least `minGapMs` between two starts, counted in Redis. A slot is a lease (member of the
 * sorted set `site:slots:<site>`, score = when it lapses, in Redis server time so worker clocks
 * do not matter) that its holder renews while it downloads; a worker that is killed stops
 * renewing, and its slot lapses after one lease instead of staying taken.
 */

export const SITE_SLOTS_PREFIX = 'site:slots:';
export const SITE_LAST_START_PREFIX = 'site:last_start:';

/** The site of a URL for pacing: its host in lower case, without `www.` or `m.`. */
export function siteOf(url: string): string {
  try {
    return new URL(url).hostname.toLowerCase().replace(/^(www|m)\./, '');
  } catch {
    return 'unknown';
  }
}

// KEYS: slots, last start. ARGV: limit, gap ms, lease ms, member.
// Returns {1, 0, held} when the slot is taken, {0, wait ms, held} otherwise.
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, gap, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if limit > 0 and held >= limit then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, math.max(1, tonumber(first[2]) - now), held}
end
if gap > 0 then
  local last = tonumber(redis.call('GET', KEYS[2]) or '0')
  if now - last < gap then return {0, gap - (now - last), held} end
  redis.call('SET', KEYS[2], now, 'PX', gap)
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[4])
redis.call('PEXPIRE', KEYS[1], lease * 2)
return {1, 0, held + 1}
`;

// KEYS: slots. ARGV: lease ms, member. Renews a lease that is still held; 0 when it lapsed.
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[2])
if n > 0 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2) end
return n
`;

export interface SiteSlotOptions {
  site: string;
  /** Downloads at once on the site; 0: no limit. */
  limit: number;
  /** Least time between two starts; 0: none. */
  minGapMs: number;
  /** How long a slot lasts without renewal (default 30 s); renewed every third of it. */
  leaseMs?: number;
  /** Who holds it, for an operator reading the set (`<job id>`). */
  holder: string;
}

export interface SiteSlot {
  readonly site: string;
  /** Gives the slot back; safe to call twice. */
  release(): Promise<void>;
}

export type SlotAttempt =
  | { ok: true; slot: SiteSlot }
  | { ok: false; /** When trying again may succeed. */ waitMs: number; held: number; reason: 'busy' | 'gap' };

/** One try at a slot; a taken slot renews itself until released. */
export async function tryAcquireSiteSlot(redis: Redis, options: SiteSlotOptions): Promise<SlotAttempt> {
  const leaseMs = options.leaseMs ?? 30_000;
  const slots = `${SITE_SLOTS_PREFIX}${options.site}`;
  const member = `${options.holder}:${randomBytes(4).toString('hex')}`;
  const [ok, waitMs, held] = (await redis.eval(
    ACQUIRE,
    2,
    slots,
    `${SITE_LAST_START_PREFIX}${options.site}`,
    options.limit,
    options.minGapMs,
    leaseMs,
    member,
  )) as [number, number, number];
  if (ok !== 1) {
    const busy = options.limit > 0 && held >= options.limit;
    return { ok: false, waitMs, held, reason: busy ? 'busy' : 'gap' };
  }
  const renew = setInterval(
    () => void redis.eval(RENEW, 1, slots, leaseMs, member).catch(() => undefined),
    Math.max(100, Math.floor(leaseMs / 3)),
  );
  renew.unref();
  let released: Promise<void> | undefined;
  return {
    ok: true,
    slot: {
      site: options.site,
      release() {
        clearInterval(renew);
        released ??= redis.zrem(slots, member).then(
          () => undefined,
          // Redis away: the lease lapses on its own.
          () => undefined,
        );
        return released;
      },
    },
  };
}

/** Downloads holding a slot on `site` now (lapsed leases not counted). */
export async function siteSlotsHeld(redis: Redis, site: string): Promise<number> {
  const t = await redis.time();
  const now = Number(t[0]) * 1000 + Math.floor(Number(t[1]) / 1000);
  return redis.zcount(`${SITE_SLOTS_PREFIX}${site}`, `(${now}`, '+inf');
}
