import {
  EXPIRY_INDEX,
  JANITOR_SUBJECTS,
  TOMBSTONE_TTL_MS,
  lockToken,
  parseJobKey,
  releaseManyIfOwner,
  releaseUploadRefs,
  sweepingKey,
  uploadHashOf,
  uploadSweepingKey,
  type Config,
  type EventPublisher,
  type FileStore,
  type JobKind,
  type Logger,
  type Redis,
  type Storage,
} from '@media-jobs/libs';
import { filesNamed, filesOwnedBy, removeGrouped, resultIdOf, type StoredRef } from './files.js';
import { resultExtensions } from './orphans.js';

/**
 * The expiry pass. Race safety rests on one rule: the janitor deletes a job key's files only
 * while it holds that key's tombstone `sweeping:<key>`, set in the same Lua step that confirms
 * the expiry and deletes the record, and `JobStore.claim` waits while a tombstone exists. So a
 * job re-created with the same id either came first (its new score is in the future and the
 * step skips the key) or comes after the old files are gone. The index entry is removed last,
 * with the tombstone: a janitor killed half-way leaves the entry, and the next sweep redoes
 * the (idempotent) work. Re-checking after the deletion could not undo a deleted file; a
 * tombstone prevents the collision instead of detecting it.
 */

/** Test seams between the steps of one batch, to make interleavings deterministic. */
export interface SweepHooks {
  afterRead?(keys: string[]): Promise<void>;
  /** Records deleted and tombstones set; no file removed yet. */
  afterClaim?(keys: string[]): Promise<void>;
  /** Files located and upload references dropped (tombstones set on uploads left unused); nothing deleted yet. */
  beforeDelete?(keys: string[]): Promise<void>;
  /** Files removed; index entries and tombstones still there. */
  afterFiles?(keys: string[]): Promise<void>;
}

export interface SweepContext {
  readonly redis: Redis;
  /** Local folders: the janitor's own `tmp/`. */
  readonly storage: Storage;
  /** Where results and uploads live (`STORAGE`). */
  readonly files: FileStore;
  readonly events: EventPublisher;
  readonly logger: Logger;
  readonly config: Pick<Config, 'cacheTtlMs' | 'downloadTimeoutMs' | 'normalizeTimeoutMs'>;
  readonly batchSize: number;
  /** Claimed keys whose files are located in one pass over each folder. */
  readonly fileBatchSize: number;
  readonly hooks: SweepHooks;
  /** Files stored above which the expiry pass finds result files by name (default `PROBE_ABOVE_FILES`). */
  readonly probeAboveFiles?: number;
  /** Checked between batches: false once this janitor lost the sweep lock. */
  stillOwner(): boolean;
}

export interface SweepTotals {
  removed: { download: number; normalize: number; orphan: number };
  files_removed: number;
  bytes_freed: number;
}

export function emptyTotals(): SweepTotals {
  return { removed: { download: 0, normalize: 0, orphan: 0 }, files_removed: 0, bytes_freed: 0 };
}

// Per key: 1 = expired, record deleted and tombstone set; 0 = no longer expired (left the
// range); 2 = the record says it lives on although its score passed (left in place).
// KEYS: index, job keys... ARGV: now ms, now ISO, token, tombstone ttl ms, tombstone prefix.
const CLAIM_EXPIRED = `
local now = tonumber(ARGV[1])
local out = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local score = redis.call('ZSCORE', KEYS[1], key)
  local state = 0
  if score and tonumber(score) <= now then
    state = 1
    local cur = redis.call('GET', key)
    if cur then
      -- JobStore writes JSON.stringify output, so the field is found without decoding it all.
      local expires = string.match(cur, '"expires_at":"([^"]*)"')
      if not expires then
        local ok, rec = pcall(cjson.decode, cur)
        if ok and type(rec) == 'table' and type(rec['expires_at']) == 'string' then expires = rec['expires_at'] end
      end
      if expires and expires > ARGV[2] then state = 2 end
    end
    if state == 1 then
      redis.call('DEL', key)
      redis.call('SET', ARGV[5] .. key, ARGV[3], 'PX', ARGV[4])
    end
  end
  out[i - 1] = state
end
return out
`;

// Extends the tombstones still ours; 1 per key held. KEYS: tombstones. ARGV: token, ttl ms.
const REFRESH = `
local out = {}
for i, t in ipairs(KEYS) do
  if redis.call('GET', t) == ARGV[1] then redis.call('PEXPIRE', t, ARGV[2]); out[i] = 1 else out[i] = 0 end
end
return out
`;

// Removes index entry and tombstone of keys whose tombstone is still ours; 1 per key done.
// KEYS: index, job keys... ARGV: token, now ms, tombstone prefix.
const FINISH = `
local out = {}
for i = 2, #KEYS do
  local t = ARGV[3] .. KEYS[i]
  out[i - 1] = 0
  if redis.call('GET', t) == ARGV[1] then
    redis.call('DEL', t)
    local score = redis.call('ZSCORE', KEYS[1], KEYS[i])
    if score and tonumber(score) <= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], KEYS[i]) end
    out[i - 1] = 1
  end
end
return out
`;

const TOMBSTONE_PREFIX = sweepingKey('');

function pick<T>(items: readonly T[], flags: readonly number[], want: number): T[] {
  return items.filter((_, i) => flags[i] === want);
}

/** Removes every job whose expiry passed by `nowMs`, reading the index in batches of `ctx.batchSize`. */
export async function sweepExpired(ctx: SweepContext, nowMs: number, totals: SweepTotals): Promise<void> {
  const token = lockToken();
  const nowIso = new Date(nowMs).toISOString();
  // Files are located by streaming each folder once per `fileBatchSize` claimed keys, so
  // claims accumulate first. While one file batch is deleted, the next one is claimed: Redis
  // works while this process unlinks. Claimed keys keep their index entry until `finish`, which
  // runs only here between reads, so the read offset (claimed, stuck or unfinished entries)
  // never shifts under a read.
  let offset = 0;
  let pending: string[] = [];
  let firstClaimAt = 0;
  let deleting: Promise<Deletion> | null = null;
  const settle = async () => {
    const done = deleting;
    deleting = null;
    if (done) offset -= await finish(ctx, await done, nowMs, token, totals);
  };
  const startDeleting = async () => {
    await settle();
    deleting = deleteClaimed(ctx, pending, firstClaimAt, token);
    // Awaited by the next settle; this only keeps a failure from counting as unhandled meanwhile.
    deleting.catch(() => undefined);
    pending = [];
  };
  while (ctx.stillOwner()) {
    const keys = await ctx.redis.zrangebyscore(EXPIRY_INDEX, '-inf', nowMs, 'LIMIT', offset, ctx.batchSize);
    if (keys.length > 0) {
      await ctx.hooks.afterRead?.(keys);
      const args = [nowMs, nowIso, token, TOMBSTONE_TTL_MS, TOMBSTONE_PREFIX];
      const keyArgs = [EXPIRY_INDEX, ...keys];
      const states = (await ctx.redis.eval(CLAIM_EXPIRED, keyArgs.length, ...keyArgs, ...args)) as number[];
      const claimed = pick(keys, states, 1);
      if (pending.length === 0) firstClaimAt = performance.now();
      pending.push(...claimed);
      offset += claimed.length + pick(keys, states, 2).length;
    }
    if (pending.length >= ctx.fileBatchSize) await startDeleting();
    if (keys.length < ctx.batchSize) break;
  }
  // Done, lock lost or stopping: finish what this sweep claimed (under tombstones still its own).
  if (pending.length > 0) await startDeleting();
  await settle();
}

interface Deletion {
  held: string[];
  removed: Map<string, { files: string[]; bytes: number }>;
}

/**
 * A tombstone set this long ago is surely still ours (it lives `TOMBSTONE_TTL_MS`, and the
 * sweep lock, which another janitor needs to override it, lives half that): no need to ask.
 */
const SURELY_HELD_MS = 10_000;

/** Deletes the files of claimed keys whose tombstones are still ours; leaves the index alone. */
async function deleteClaimed(
  ctx: SweepContext,
  claimed: string[],
  claimedAt: number,
  token: string,
): Promise<Deletion> {
  const { redis, files } = ctx;
  await ctx.hooks.afterClaim?.(claimed);
  // A stalled janitor may have lost tombstones to their expiry: then delete files only under
  // those still ours (and extend them).
  let held = claimed;
  if (performance.now() - claimedAt > SURELY_HELD_MS) {
    const tombstones = claimed.map((k) => TOMBSTONE_PREFIX + k);
    const flags = (await redis.eval(
      REFRESH,
      tombstones.length,
      ...tombstones,
      token,
      TOMBSTONE_TTL_MS,
    )) as number[];
    held = pick(claimed, flags, 1);
  }
  const { paths, uploads } = await locateFiles(ctx, held, token);
  await ctx.hooks.beforeDelete?.(held);
  const removed = await removeGrouped(files, paths);
  await releaseManyIfOwner(redis, [...uploads].map(uploadSweepingKey), token);
  await ctx.hooks.afterFiles?.(held);
  return { held, removed };
}

/** Removes index entries and tombstones of deleted keys and reports them; returns how many were finished. */
async function finish(
  ctx: SweepContext,
  deletion: Deletion,
  nowMs: number,
  token: string,
  totals: SweepTotals,
) {
  const { held, removed } = deletion;
  const keyArgs = [EXPIRY_INDEX, ...held];
  const args = [token, nowMs, TOMBSTONE_PREFIX];
  const finished = (await ctx.redis.eval(FINISH, keyArgs.length, ...keyArgs, ...args)) as number[];
  for (const key of held) report(ctx, key, removed.get(key) ?? { files: [], bytes: 0 }, totals);
  return finished.filter((f) => f === 1).length;
}

/**
 * Every file of the held keys: result files by id, and each upload whose last reference
 * these jobs held (that job's release set the upload's tombstone under `token`).
 */
async function locateFiles(
  ctx: SweepContext,
  held: string[],
  token: string,
): Promise<{ paths: Map<string, StoredRef[]>; uploads: Set<string> }> {
  const ids: Record<JobKind, Map<string, string>> = { download: new Map(), normalize: new Map() };
  for (const key of held) {
    const parsed = parseJobKey(key);
    if (parsed) ids[parsed.kind].set(parsed.id, key);
  }
  const normalizeIds = [...ids.normalize.keys()];
  const lastUse = await releaseUploadRefs(ctx.redis, normalizeIds, token);
  const uploadOwner = new Map<string, string>();
  normalizeIds.forEach(
    (id, i) => lastUse[i] && uploadOwner.set(uploadHashOf(id), ids.normalize.get(id) as string),
  );
  // With many files stored, result files are found by name under the extensions the orphan
  // pass saw; one with an extension it never saw stays and goes as an orphan (its record and
  // index entry are gone by then), within two orphan passes.
  const exts = await resultExtensions(ctx);
  const results = (bucket: 'downloads' | 'normalized', wanted: Set<string>) => {
    const tried = exts?.[bucket];
    return tried && tried.length > 0
      ? filesNamed(ctx.files, bucket, wanted, tried)
      : filesOwnedBy(ctx.files, bucket, wanted, resultIdOf);
  };
  const [downloads, normalized, uploads] = await Promise.all([
    results('downloads', new Set(ids.download.keys())),
    results('normalized', new Set(ids.normalize.keys())),
    filesOwnedBy(ctx.files, 'uploads', new Set(uploadOwner.keys()), (n) => n.slice(0, 16)),
  ]);
  const paths = new Map<string, StoredRef[]>();
  const add = (key: string | undefined, list: StoredRef[] | undefined) => {
    if (key && list) paths.set(key, [...(paths.get(key) ?? []), ...list]);
  };
  for (const [id, list] of downloads) add(ids.download.get(id), list);
  for (const [id, list] of normalized) add(ids.normalize.get(id), list);
  for (const [hex16, list] of uploads) add(uploadOwner.get(hex16), list);
  return { paths, uploads: new Set(uploadOwner.keys()) };
}

function report(
  ctx: SweepContext,
  key: string,
  removed: { files: string[]; bytes: number },
  totals: SweepTotals,
): void {
  const parsed = parseJobKey(key);
  if (parsed) totals.removed[parsed.kind] += 1;
  totals.files_removed += removed.files.length;
  totals.bytes_freed += removed.bytes;
  const event = {
    type: 'removed' as const,
    job_id: parsed?.id ?? key,
    kind: parsed?.kind ?? null,
    key,
    files: removed.files,
    bytes_freed: removed.bytes,
    reason: 'expired' as const,
  };
  ctx.events.publish(JANITOR_SUBJECTS.removed, event);
  // Thousands of jobs per sweep: skip building the log object when debug is off.
  if (ctx.logger.isLevelEnabled('debug')) {
    ctx.logger.debug(
      { job_id: event.job_id, kind: event.kind, files: removed.files, bytes: removed.bytes },
      'Removed expired job',
    );
  }
}
