import type { Redis } from 'ioredis';
import {
  JOB_KINDS,
  jobKey,
  jobRecordSchema,
  parseJobKey,
  type JobKind,
  type JobRecord,
  type JobStatus,
} from './job-record.js';
import { unavailable } from './errors.js';
import { LuaScript } from './lua.js';
import { retryWhileBusy, sweepingKey } from './sweep-lock.js';

/** Sorted set of every job key (no TTL): score = `expires_at` in epoch ms. The janitor reads it. */
export const EXPIRY_INDEX = 'jobs:expiry';
/**
 * Sorted set of the keys of jobs still under way (`queued` or `processing`), no TTL: score =
 * the last sign of life in Redis server time (epoch ms): the last write of the record, or a
 * running worker's heartbeat. The reconciler reads the oldest entries to find jobs that no
 * worker or queue holds any more.
 */
export const ACTIVE_INDEX = 'jobs:active';
/** Hash of cache counters: `<kind>:hits`, `<kind>:misses`. */
export const CACHE_STATS_KEY = 'stats:cache';

/** A record as read, with the exact JSON stored, which guards the next write (compare-and-set). */
export interface StoredJob {
  readonly key: string;
  readonly raw: string;
  readonly record: JobRecord;
}

export interface ClaimResult {
  /** true: this call created (or re-queued a failed) job; false: a live job with that id exists. */
  readonly created: boolean;
  readonly job: StoredJob;
}

// Creates the record unless a live (not failed) one exists. Atomic, so among concurrent
// identical submissions exactly one wins. Answers 2 (busy) while the janitor holds the key's
// tombstone: its files are being deleted and a new job must not start before they are gone.
// KEYS: record, index, stats, tombstone, active index. ARGV: json, expires ms, kind.
const CLAIM = new LuaScript(`
if redis.call('EXISTS', KEYS[4]) == 1 then return {2, ''} end
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if ok and type(rec) == 'table' and rec['status'] ~= 'failed' then
    redis.call('HINCRBY', KEYS[3], ARGV[3] .. ':hits', 1)
    return {0, cur}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], KEYS[1])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[5], t[1] * 1000 + math.floor(t[2] / 1000), KEYS[1])
redis.call('HINCRBY', KEYS[3], ARGV[3] .. ':misses', 1)
return {1, ARGV[1]}
`);

// The cache-hit path: returns the live (not failed) record and counts the hit, or nil. Sends
// no new record, so a hit costs one small round trip. KEYS: record, stats. ARGV: kind.
const PEEK = new LuaScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
local ok, rec = pcall(cjson.decode, cur)
if ok and type(rec) == 'table' and rec['status'] ~= 'failed' then
  redis.call('HINCRBY', KEYS[2], ARGV[1] .. ':hits', 1)
  return cur
end
return false
`);

/**
 * A fixed-window request budget counted in the same round trip as a read (the gateway's rate
 * limit): the counter at `key` counts this request, the first hit of a window sets the
 * expiry, and a read over the limit is not done.
 */
export interface Budget {
  key: string;
  limit: number;
  windowMs: number;
}

/** What a read under a budget answers: the count after this request, the window's time left and, within the limit, the job. */
export interface Budgeted<T> {
  hits: number;
  ttlMs: number;
  /** undefined when the budget was over (nothing read). */
  value: T | undefined;
}

/**
 * Lua that counts one hit on KEYS[1] (ARGV[1]: window ms) into `hits` and `ttl`. A key that
 * somehow lost its expiry gets it back. Shared with the gateway's plain rate-limit script.
 */
export const BUDGET_COUNT_LUA = `
local hits = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end`;

// PEEK under a budget: one round trip for the rate limit and the cache-hit read.
// KEYS: budget counter, record, stats. ARGV: window ms, limit, kind.
const BUDGETED_PEEK = new LuaScript(`${BUDGET_COUNT_LUA}
if hits > tonumber(ARGV[2]) then return {hits, ttl} end
local cur = redis.call('GET', KEYS[2])
if not cur then return {hits, ttl, ''} end
local ok, rec = pcall(cjson.decode, cur)
if ok and type(rec) == 'table' and rec['status'] ~= 'failed' then
  redis.call('HINCRBY', KEYS[3], ARGV[3] .. ':hits', 1)
  return {hits, ttl, cur}
end
return {hits, ttl, ''}
`);

// `find` under a budget. KEYS: budget counter, then the id's record key of each kind. ARGV: window ms, limit.
const BUDGETED_FIND = new LuaScript(`${BUDGET_COUNT_LUA}
if hits > tonumber(ARGV[2]) then return {hits, ttl} end
local reply = {hits, ttl}
for i = 2, #KEYS do reply[i + 1] = redis.call('GET', KEYS[i]) or '' end
return reply
`);

// Replaces the record only if it is still exactly what the caller read, so a deleted or
// re-created job is never overwritten by a stale worker. A job still under way is stamped
// in the active index (server time), a finished one leaves it.
// KEYS: record, index, active index. ARGV: expected, json, expires ms, '1' when under way.
const REPLACE = new LuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
if ARGV[4] == '1' then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[3], t[1] * 1000 + math.floor(t[2] / 1000), KEYS[1])
else
  redis.call('ZREM', KEYS[3], KEYS[1])
end
return 1
`);

// A running worker's heartbeat: stamps the keys still in the active index (XX: a job that
// finished meanwhile is not put back). KEYS: active index, job keys...
const HEARTBEAT = new LuaScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i = 2, #KEYS do redis.call('ZADD', KEYS[1], 'XX', now, KEYS[i]) end
return now
`);

// Milliseconds since the key's last sign of life in the active index (server time), or -1.
// KEYS: active index, job key.
const SINCE_ALIVE = new LuaScript(`
local score = redis.call('ZSCORE', KEYS[1], KEYS[2])
if not score then return -1 end
local t = redis.call('TIME')
return t[1] * 1000 + math.floor(t[2] / 1000) - tonumber(score)
`);

// Deletes record and index entries together and returns what was stored. KEYS: record, index, active index.
const REMOVE = new LuaScript(`
local cur = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('ZREM', KEYS[3], KEYS[1])
return cur
`);

export interface ListQuery {
  kind?: JobKind;
  status?: JobStatus;
  limit: number;
  /** Opaque cursor from the previous page. */
  cursor?: string;
}

export interface ListPage {
  jobs: JobRecord[];
  next_cursor: string | null;
}

/** `<expires ms>:<record key>`, as `list` returns it; null for none or anything else. */
function parseListCursor(cursor: string | undefined): { score: number; key: string } | null {
  const match = cursor ? /^(\d{1,15}):(.+)$/.exec(cursor) : null;
  return match ? { score: Number(match[1]), key: match[2] as string } : null;
}

export interface JobStoreOptions {
  redis: Redis;
  ttlMs: number;
  now?: () => number;
  /**
   * Replicas that must hold a new job's record before `create` returns (Redis `WAIT`), so a
   * failover right after a 202 cannot lose the job; 0 (default): no wait.
   */
  createReplicas?: number;
  /** Longest `WAIT` for them; past it the job is accepted all the same (a replica is down). */
  createReplicaWaitMs?: number;
}

function parse(key: string, raw: string): StoredJob {
  return { key, raw, record: jobRecordSchema.parse(JSON.parse(raw)) };
}

/**
 * Job records in Redis. Every write sets the key's expiry to `expires_at` itself (PXAT) and
 * the same instant as the key's score in `jobs:expiry`, so `TTL job:<id>`, `expires_at` and
 * the index always agree.
 */
export class JobStore {
  readonly ttlMs: number;
  private readonly redis: Redis;
  private readonly now: () => number;
  private readonly createReplicas: number;
  private readonly createReplicaWaitMs: number;

  constructor(options: JobStoreOptions) {
    this.redis = options.redis;
    this.ttlMs = options.ttlMs;
    this.now = options.now ?? Date.now;
    this.createReplicas = options.createReplicas ?? 0;
    this.createReplicaWaitMs = options.createReplicaWaitMs ?? 500;
  }

  /** A fresh queued record; `expires_at` = now + TTL. */
  newRecord(kind: JobKind, id: string, request: Record<string, unknown>): JobRecord {
    const now = this.now();
    const iso = new Date(now).toISOString();
    return {
      id,
      kind,
      status: 'queued',
      progress: 0,
      created_at: iso,
      updated_at: iso,
      expires_at: new Date(now + this.ttlMs).toISOString(),
      request,
      attempts: 0,
    };
  }

  /** Atomically creates the job, or returns the live one with that id (a failed one is replaced). */
  async claim(kind: JobKind, id: string, request: Record<string, unknown>): Promise<ClaimResult> {
    const live = await this.peek(kind, id);
    return live ? { created: false, job: live } : this.create(kind, id, request);
  }

  /** The live (not failed) job with that id, counted as a cache hit; null when there is none. One small round trip. */
  async peek(kind: JobKind, id: string): Promise<StoredJob | null> {
    const key = jobKey(kind, id);
    const live = (await PEEK.run(this.redis, [key, CACHE_STATS_KEY], [kind])) as string | null;
    return live ? parse(key, live) : null;
  }

  /**
   * `peek` and a request budget in one round trip (the gateway's cache-hit path): within the
   * limit, the live job or null; over it, nothing is read or counted as a hit.
   */
  async peekBudgeted(kind: JobKind, id: string, budget: Budget): Promise<Budgeted<StoredJob | null>> {
    const key = jobKey(kind, id);
    const reply = (await BUDGETED_PEEK.run(
      this.redis,
      [budget.key, key, CACHE_STATS_KEY],
      [budget.windowMs, budget.limit, kind],
    )) as [number, number, string?];
    const raw = reply[2];
    return {
      hits: Number(reply[0]),
      ttlMs: Number(reply[1]),
      value: raw === undefined ? undefined : raw === '' ? null : parse(key, raw),
    };
  }

  /**
   * `claim` without the peek, for a caller that has just peeked: creates the job unless a live
   * one appeared meanwhile (then that one comes back, `created: false`).
   */
  async create(kind: JobKind, id: string, request: Record<string, unknown>): Promise<ClaimResult> {
    const key = jobKey(kind, id);
    const [created, stored] = await retryWhileBusy(
      async () => {
        const record = this.newRecord(kind, id, request);
        const raw = JSON.stringify(record);
        const expiresMs = Date.parse(record.expires_at);
        const keys = [key, EXPIRY_INDEX, CACHE_STATS_KEY, sweepingKey(key), ACTIVE_INDEX];
        const reply = (await CLAIM.run(this.redis, keys, [raw, expiresMs, kind])) as [number, string];
        return reply[0] === 2 ? 'busy' : reply;
      },
      () =>
        unavailable('job.sweeping', 'the previous job with this id is being cleaned up; try again shortly'),
    );
    if (created === 1 && this.createReplicas > 0) {
      await this.redis.wait(this.createReplicas, this.createReplicaWaitMs);
    }
    return { created: created === 1, job: parse(key, stored) };
  }

  async get(kind: JobKind, id: string): Promise<StoredJob | null> {
    const key = jobKey(kind, id);
    const raw = await this.redis.get(key);
    return raw === null ? null : parse(key, raw);
  }

  /** Looks an id up under both kinds' keys. */
  async find(id: string): Promise<StoredJob | null> {
    const keys = JOB_KINDS.map((kind) => jobKey(kind, id));
    const raws = await this.redis.mget(...keys);
    for (const [i, raw] of raws.entries()) {
      if (raw) return parse(keys[i] as string, raw);
    }
    return null;
  }

  /** `find` and a request budget in one round trip (the gateway's `GET /jobs/:id`). */
  async findBudgeted(id: string, budget: Budget): Promise<Budgeted<StoredJob | null>> {
    const keys = JOB_KINDS.map((kind) => jobKey(kind, id));
    const reply = (await BUDGETED_FIND.run(
      this.redis,
      [budget.key, ...keys],
      [budget.windowMs, budget.limit],
    )) as [number, number, ...string[]];
    const hits = Number(reply[0]);
    const ttlMs = Number(reply[1]);
    if (reply.length === 2) return { hits, ttlMs, value: undefined };
    for (let i = 0; i < keys.length; i += 1) {
      const raw = reply[i + 2] as string;
      if (raw) return { hits, ttlMs, value: parse(keys[i] as string, raw) };
    }
    return { hits, ttlMs, value: null };
  }

  /** True when the index still holds an id whose expiry has passed: the job expired, its files await the sweep. */
  async isExpired(id: string): Promise<boolean> {
    const now = this.now();
    for (const kind of JOB_KINDS) {
      const score = await this.redis.zscore(EXPIRY_INDEX, jobKey(kind, id));
      if (score !== null && Number(score) <= now) return true;
    }
    return false;
  }

  /**
   * Writes `next` in place of `prev` if the stored record is still `prev` (compare-and-set).
   * Returns the new stored job, or null when the job was deleted, expired or replaced meanwhile.
   */
  async replace(prev: StoredJob, next: JobRecord): Promise<StoredJob | null> {
    const raw = JSON.stringify(next);
    const expiresMs = Date.parse(next.expires_at);
    const underWay = next.status === 'queued' || next.status === 'processing' ? '1' : '0';
    const ok = (await REPLACE.run(
      this.redis,
      [prev.key, EXPIRY_INDEX, ACTIVE_INDEX],
      [prev.raw, raw, expiresMs, underWay],
    )) as number;
    return ok === 1 ? { key: prev.key, raw, record: next } : null;
  }

  /** A running worker's sign of life for these job keys (one round trip); finished jobs are left alone. */
  async heartbeat(keys: readonly string[]): Promise<void> {
    if (keys.length > 0) await HEARTBEAT.run(this.redis, [ACTIVE_INDEX, ...keys], []);
  }

  /** Milliseconds since the job's last sign of life (write or heartbeat), or null when it is not under way. */
  async sinceAlive(key: string): Promise<number | null> {
    const ms = (await SINCE_ALIVE.run(this.redis, [ACTIVE_INDEX, key], [])) as number;
    return ms < 0 ? null : ms;
  }

  /** Applies a patch with a fresh `updated_at` (and the same `expires_at` unless the patch sets one). */
  async update(prev: StoredJob, patch: Partial<JobRecord>): Promise<StoredJob | null> {
    const next: JobRecord = { ...prev.record, ...patch, updated_at: new Date(this.now()).toISOString() };
    return this.replace(prev, next);
  }

  /** The `expires_at` of a result completed now: a result is cached for the whole TTL. */
  expiresFromNow(): string {
    return new Date(this.now() + this.ttlMs).toISOString();
  }

  /** Deletes the record and its index entry; returns what was stored, or null. */
  async remove(kind: JobKind, id: string): Promise<StoredJob | null> {
    const key = jobKey(kind, id);
    const raw = (await REMOVE.run(this.redis, [key, EXPIRY_INDEX, ACTIVE_INDEX], [])) as string | null;
    return raw ? parse(key, raw) : null;
  }

  /** Newest first (by expiry), filtered by kind and status; scans a bounded number of index entries per page. */
  /**
   * Live jobs, latest expiry first (newest first: the expiry is set from creation or
   * completion). The cursor is the position of the last entry read (`<expires ms>:<key>`), not
   * an offset, so jobs created or finished meanwhile do not shift the pages: they move ahead of
   * the cursor, and no job comes twice. Each call reads a bounded part of the index.
   */
  async list(query: ListQuery): Promise<ListPage> {
    const limit = Math.max(1, Math.min(100, query.limit));
    const scanBudget = Math.max(500, limit * 10);
    const after = parseListCursor(query.cursor);
    const batch = Math.min(200, Math.max(limit, 50));
    const jobs: JobRecord[] = [];
    // Where the next read starts: at most this score, skipping `offset` entries of that score.
    let max = after ? after.score : Number.POSITIVE_INFINITY;
    let offset = 0;
    let last: { score: number; key: string } | null = null;
    let scanned = 0;
    while (jobs.length < limit && scanned < scanBudget) {
      const reply = await this.redis.zrevrangebyscore(
        EXPIRY_INDEX,
        Number.isFinite(max) ? max : '+inf',
        this.now(),
        'WITHSCORES',
        'LIMIT',
        offset,
        batch,
      );
      const entries: { key: string; score: number }[] = [];
      for (let i = 0; i + 1 < reply.length; i += 2) {
        entries.push({ key: reply[i] as string, score: Number(reply[i + 1]) });
      }
      // Equal scores come in descending key order: those not below the cursor's key were read before.
      const fresh = entries.filter((e) => !(after && e.score === after.score && e.key >= after.key));
      const wanted = fresh.filter((e) => !query.kind || parseJobKey(e.key)?.kind === query.kind);
      const raws = wanted.length > 0 ? await this.redis.mget(...wanted.map((e) => e.key)) : [];
      const rawOf = new Map(wanted.map((e, i) => [e.key, raws[i] ?? null]));
      for (const entry of entries) {
        if (entry.score === max) offset += 1;
        else [max, offset] = [entry.score, 1];
        if (!fresh.includes(entry)) continue;
        last = entry;
        scanned += 1;
        const raw = rawOf.get(entry.key);
        if (raw) {
          const { record } = parse(entry.key, raw);
          if (!query.status || record.status === query.status) jobs.push(record);
        }
        if (jobs.length >= limit) break;
      }
      if (entries.length < batch && jobs.length < limit) return { jobs, next_cursor: null };
    }
    return { jobs, next_cursor: last ? `${last.score}:${last.key}` : null };
  }

  /** Cache hit and miss counters by kind. */
  async cacheStats(): Promise<Record<JobKind, { hits: number; misses: number }>> {
    const raw = (await this.redis.hgetall(CACHE_STATS_KEY)) as Record<string, string>;
    const out = {} as Record<JobKind, { hits: number; misses: number }>;
    for (const kind of JOB_KINDS) {
      out[kind] = { hits: Number(raw[`${kind}:hits`] ?? 0), misses: Number(raw[`${kind}:misses`] ?? 0) };
    }
    return out;
  }
}
