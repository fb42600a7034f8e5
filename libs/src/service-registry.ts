import type { Redis } from 'ioredis';
import { serviceConfigEvent, type ServiceConfigEvent } from './events.js';

/**
 * The latest config announcement of every running service instance, so `/admin/stats` can
 * show what each process runs with. One hash, field `<service>/<instance>`, value the
 * announcement. Redis 7.0 has no per-field TTL: an entry counts as running while it is
 * younger than `SERVICE_STALE_MS` (instances announce every minute), stale fields are
 * pruned on write, and the whole hash expires when no instance announces any more.
 */
export const SERVICES_CONFIG_KEY = 'services:config';
export const SERVICE_STALE_MS = 150_000;

/** Values that must agree across services: they decide when results expire and are removed. */
export const SHARED_VARIABLES = ['CACHE_TTL_HOURS', 'CLEANUP_INTERVAL_MINUTES'] as const;

export interface ConfigDisagreement {
  variable: string;
  /** `<service>/<instance>` → value. */
  values: Record<string, string | number | boolean | null>;
}

const field = (e: Pick<ServiceConfigEvent, 'service' | 'instance'>): string => `${e.service}/${e.instance}`;

export async function recordServiceConfig(
  redis: Redis,
  event: ServiceConfigEvent,
  now = Date.now(),
): Promise<void> {
  const all = await redis.hgetall(SERVICES_CONFIG_KEY);
  const stale = Object.entries(all)
    .filter(([, raw]) => !isFresh(parseEntry(raw), now))
    .map(([name]) => name);
  const tx = redis.multi().hset(SERVICES_CONFIG_KEY, field(event), JSON.stringify(event));
  if (stale.length > 0) tx.hdel(SERVICES_CONFIG_KEY, ...stale.filter((s) => s !== field(event)));
  await tx.pexpire(SERVICES_CONFIG_KEY, SERVICE_STALE_MS).exec();
}

function parseEntry(raw: string): ServiceConfigEvent | null {
  try {
    const parsed = serviceConfigEvent.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

function isFresh(entry: ServiceConfigEvent | null, now: number): entry is ServiceConfigEvent {
  return entry !== null && now - Date.parse(entry.at) < SERVICE_STALE_MS;
}

/** The running instances' latest announcements, sorted by service and instance. */
export async function listServiceConfigs(redis: Redis, now = Date.now()): Promise<ServiceConfigEvent[]> {
  const all = await redis.hgetall(SERVICES_CONFIG_KEY);
  return Object.values(all)
    .map(parseEntry)
    .filter((e): e is ServiceConfigEvent => isFresh(e, now))
    .sort((a, b) => field(a).localeCompare(field(b)));
}

/** The shared variables on which the given instances do not all agree. */
export function configDisagreements(entries: readonly ServiceConfigEvent[]): ConfigDisagreement[] {
  const out: ConfigDisagreement[] = [];
  for (const variable of SHARED_VARIABLES) {
    const values: ConfigDisagreement['values'] = {};
    for (const e of entries) values[field(e)] = e.config[variable] ?? null;
    if (new Set(Object.values(values).map((v) => JSON.stringify(v))).size > 1) out.push({ variable, values });
  }
  return out;
}
