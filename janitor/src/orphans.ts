import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  EXPIRY_INDEX,
  JANITOR_SUBJECTS,
  TOMBSTONE_TTL_MS,
  jobKey,
  lockToken,
  releaseManyIfOwner,
  sweepingKey,
  uploadRefsKey,
  type Bucket,
  type JanitorOrphanProgress,
  type JobKind,
  type StoredFile,
} from '@media-jobs/libs';
import { entryChunks, mapLimit, removeGrouped, removePath, resultIdOf, type StoredRef } from './files.js';
import type { SweepContext, SweepTotals } from './sweep.js';

/**
 * The orphan pass: files no record, index entry or upload reference accounts for (Redis
 * data lost, a crash between steps elsewhere), older than the TTL. A file's owner key is
 * derived from its name, and the file goes only under that key's tombstone, taken by a Lua
 * step that confirms nothing owns it, so a job created meanwhile waits, as in the expiry pass.
 */

const TOMBSTONE_PREFIX = sweepingKey('');

// 1 per owner key claimed: no record, no index entry (when ARGV[4] = '1'), no tombstone.
// KEYS: index, owner keys... ARGV: token, ttl ms, tombstone prefix, check index.
const CLAIM_ORPHANS = `
local out = {}
for i = 2, #KEYS do
  local key, t = KEYS[i], ARGV[3] .. KEYS[i]
  out[i - 1] = 0
  local indexed = ARGV[4] == '1' and redis.call('ZSCORE', KEYS[1], key)
  if redis.call('EXISTS', key) == 0 and not indexed and redis.call('EXISTS', t) == 0 then
    redis.call('SET', t, ARGV[1], 'PX', ARGV[2])
    out[i - 1] = 1
  end
end
return out
`;

interface Folder {
  bucket: Bucket;
  /** The Redis key that owns a file name (record or upload references), or null if none can. */
  ownerOf(name: string): string | null;
  kind: JobKind | null;
  checkIndex: boolean;
}

function folders(): Folder[] {
  const result = (kind: JobKind) => (name: string) => {
    const id = resultIdOf(name);
    return id === null ? null : jobKey(kind, id);
  };
  const upload = (name: string) =>
    /^[0-9a-f]{64}\.[^.]+$/.test(name) ? uploadRefsKey(name.slice(0, 16)) : null;
  return [
    { bucket: 'downloads', ownerOf: result('download'), kind: 'download', checkIndex: true },
    { bucket: 'normalized', ownerOf: result('normalize'), kind: 'normalize', checkIndex: true },
    { bucket: 'uploads', ownerOf: upload, kind: null, checkIndex: false },
  ];
}

/** Where the orphan pass stands, kept in Redis (`ORPHAN_CURSOR_KEY`) so that any janitor resumes it. */
interface OrphanCursor {
  /** Index into `folders()` of the bucket being scanned. */
  folder: number;
  /** The store's cursor in that bucket (null: its start). */
  cursor: string | null;
  /** Files looked at since the pass began. */
  position: number;
  /** Files this pass removed from the bucket being scanned (a resumed local scan skips that many fewer). */
  removed: number;
  complete_passes: number;
  /** Files the last complete pass looked at. */
  total_estimate: number | null;
  pass_started_at: string;
  /** Extensions of the result files seen per bucket, by this pass and the last complete one. */
  exts?: Partial<Record<Bucket, string[]>>;
  /** Those of the last complete pass alone (what `resultExtensions` trusts). */
  last_exts?: Partial<Record<Bucket, string[]>>;
}

/** Extensions remembered per bucket at most (a name from a result file has one of few). */
const MAX_EXTS = 64;

/**
 * Above this many files (as the last complete orphan pass counted them), the expiry pass
 * finds result files by name (`<id>.<ext>` for each extension the orphan pass saw) instead
 * of listing the bucket for every batch; null: list.
 */
export const PROBE_ABOVE_FILES = 100_000;

/** The result extensions to try per bucket, or null where the expiry pass should list the bucket. */
export async function resultExtensions(
  ctx: SweepContext,
): Promise<Partial<Record<'downloads' | 'normalized', string[]>> | null> {
  const raw = await ctx.redis.get(ORPHAN_CURSOR_KEY);
  if (!raw) return null;
  try {
    const c = JSON.parse(raw) as OrphanCursor;
    const above = ctx.probeAboveFiles ?? PROBE_ABOVE_FILES;
    if (c.total_estimate === null || c.total_estimate < above || !c.last_exts) return null;
    const union = (b: 'downloads' | 'normalized') => [
      ...new Set([...(c.last_exts?.[b] ?? []), ...(c.exts?.[b] ?? [])]),
    ];
    return { downloads: union('downloads'), normalized: union('normalized') };
  } catch {
    return null;
  }
}

function noteExtensions(state: OrphanCursor, bucket: Bucket, files: readonly StoredFile[]): OrphanCursor {
  if (bucket === 'uploads' || files.length === 0) return state;
  const seen = new Set(state.exts?.[bucket] ?? []);
  const before = seen.size;
  for (const f of files) {
    if (seen.size >= MAX_EXTS) break;
    const id = resultIdOf(f.name);
    if (id !== null) seen.add(f.name.slice(id.length + 1));
  }
  return seen.size === before ? state : { ...state, exts: { ...state.exts, [bucket]: [...seen] } };
}

export const ORPHAN_CURSOR_KEY = 'janitor:orphan_cursor';

/** How much of the buckets one sweep's orphan slice may scan. */
export interface OrphanBudget {
  /** Files per sweep at most. */
  files: number;
  /** Milliseconds per sweep at most; the slice ends after the chunk that passes it (at least one chunk). */
  ms: number;
}

function freshCursor(nowIso: string, prev?: OrphanCursor): OrphanCursor {
  return {
    folder: 0,
    cursor: null,
    position: 0,
    removed: 0,
    complete_passes: prev?.complete_passes ?? 0,
    total_estimate: prev?.total_estimate ?? null,
    pass_started_at: nowIso,
    ...(prev?.last_exts ? { last_exts: prev.last_exts } : {}),
  };
}

async function readCursor(ctx: SweepContext, nowIso: string): Promise<OrphanCursor> {
  const raw = await ctx.redis.get(ORPHAN_CURSOR_KEY);
  if (raw) {
    try {
      const c = JSON.parse(raw) as OrphanCursor;
      if (Number.isInteger(c.folder) && c.folder >= 0 && c.folder < 3 && Number.isInteger(c.position))
        return c;
    } catch {
      // Unreadable: start a pass over.
    }
  }
  return freshCursor(nowIso);
}

/**
 * One slice of the orphan pass: resumes the pass where the last sweep (of any janitor) left
 * it, scans up to `budget` files of the buckets in order, and saves the cursor after every
 * chunk, so a janitor killed mid-slice redoes at most one (idempotent) chunk. A slice that
 * completes a pass stops there; the next sweep begins the next pass. With fewer files than
 * the budget, every sweep is one complete pass.
 */
export async function sweepOrphans(
  ctx: SweepContext,
  nowMs: number,
  totals: SweepTotals,
  budget: OrphanBudget = { files: Number.POSITIVE_INFINITY, ms: Number.POSITIVE_INFINITY },
): Promise<JanitorOrphanProgress | undefined> {
  const cutoff = nowMs - ctx.config.cacheTtlMs;
  const token = lockToken();
  const started = performance.now();
  const list = folders();
  let state = await readCursor(ctx, new Date(nowMs).toISOString());
  let scanned = 0;
  let passCompleted = false;
  const save = () => ctx.redis.set(ORPHAN_CURSOR_KEY, JSON.stringify(state));
  const spent = () => scanned >= budget.files || performance.now() - started >= budget.ms;
  scan: while (!spent()) {
    const folder = list[state.folder] as Folder;
    const chunks = ctx.files.scan(folder.bucket, state.cursor, ctx.batchSize, state.removed ?? 0);
    for await (const chunk of chunks) {
      if (!ctx.stillOwner()) return undefined;
      const removed = await orphanChunk(ctx, folder, chunk.files, cutoff, token, totals);
      scanned += chunk.files.length;
      state = {
        ...noteExtensions(state, folder.bucket, chunk.files),
        cursor: chunk.cursor,
        position: state.position + chunk.files.length,
        removed: (state.removed ?? 0) + removed,
      };
      await save();
      if (spent()) break scan;
    }
    if (!ctx.stillOwner()) return undefined;
    // That bucket is done: the next one, or the pass is.
    if (state.folder + 1 < list.length) {
      state = { ...state, folder: state.folder + 1, cursor: null, removed: 0 };
    } else {
      passCompleted = true;
      state = {
        ...freshCursor(new Date(nowMs).toISOString(), state),
        complete_passes: state.complete_passes + 1,
        total_estimate: state.position,
        last_exts: state.exts ?? {},
      };
    }
    await save();
    if (passCompleted) break;
  }
  const estimate = state.total_estimate;
  return {
    scanned,
    position: state.position,
    total_estimate: estimate,
    progress: passCompleted
      ? 1
      : estimate === null
        ? null
        : estimate === 0
          ? 1
          : Math.min(1, Math.round((state.position / estimate) * 1000) / 1000),
    complete_passes: state.complete_passes,
    pass_completed: passCompleted,
    bucket: (list[state.folder] as Folder).bucket,
    pass_started_at: state.pass_started_at,
  };
}

async function modifiedBefore(path: string, cutoff: number): Promise<boolean> {
  try {
    return (await lstat(path)).mtimeMs < cutoff;
  } catch {
    return false;
  }
}

async function orphanChunk(
  ctx: SweepContext,
  folder: Folder,
  files: StoredFile[],
  cutoff: number,
  token: string,
  totals: SweepTotals,
): Promise<number> {
  // Age first: a live job's files are younger than the TTL, so Redis is asked about old files only.
  const old = files.filter((f) => f.mtimeMs < cutoff).map((f) => f.name);
  const owners = new Map<string, string[]>();
  const stray: string[] = [];
  for (const name of old) {
    const owner = folder.ownerOf(name);
    if (owner === null) stray.push(name);
    else owners.set(owner, [...(owners.get(owner) ?? []), name]);
  }
  const keys = [...owners.keys()];
  const args = [token, TOMBSTONE_TTL_MS, TOMBSTONE_PREFIX, folder.checkIndex ? '1' : '0'];
  const flags =
    keys.length > 0
      ? ((await ctx.redis.eval(CLAIM_ORPHANS, keys.length + 1, EXPIRY_INDEX, ...keys, ...args)) as number[])
      : [];
  const claimed = keys.filter((_, i) => flags[i] === 1);
  try {
    const candidates = new Map<string, string[]>(claimed.map((k) => [k, owners.get(k) ?? []]));
    // A stray name maps to no key, so no job can own it: only its age decides.
    for (const name of stray) candidates.set(`stray:${name}`, [name]);
    // Checked again under the tombstone: a file replaced meanwhile is a new job's.
    const aged = new Map<string, StoredRef[]>();
    for (const [owner, names] of candidates) {
      const still = (
        await mapLimit(names, 32, async (name) => {
          const file = await ctx.files.stat(folder.bucket, name);
          return file && file.mtimeMs < cutoff ? name : null;
        })
      ).filter((n) => n !== null);
      if (still.length > 0)
        aged.set(
          owner,
          still.map((name) => ({ bucket: folder.bucket, name })),
        );
    }
    const removed = await removeGrouped(ctx.files, aged);
    let files = 0;
    for (const [owner, r] of removed) {
      reportOrphan(ctx, folder, owner, r, totals);
      files += r.files.length;
    }
    return files;
  } finally {
    await releaseManyIfOwner(
      ctx.redis,
      claimed.map((k) => TOMBSTONE_PREFIX + k),
      token,
    );
  }
}

function reportOrphan(
  ctx: SweepContext,
  folder: Folder,
  owner: string,
  removed: { files: string[]; bytes: number },
  totals: SweepTotals,
): void {
  const isJob = folder.kind !== null && !owner.startsWith('stray:');
  const jobId = isJob
    ? owner.slice(owner.indexOf(':') + 1)
    : (removed.files[0]?.split('/').pop()?.split('.')[0] ?? owner);
  publishRemoved(
    ctx,
    { job_id: jobId, kind: isJob ? folder.kind : null, key: isJob ? owner : null, ...removed },
    totals,
  );
}

function publishRemoved(
  ctx: SweepContext,
  body: { job_id: string; kind: JobKind | null; key: string | null; files: string[]; bytes: number },
  totals: SweepTotals,
): void {
  totals.removed.orphan += 1;
  totals.files_removed += body.files.length;
  totals.bytes_freed += body.bytes;
  const { bytes, ...rest } = body;
  ctx.events.publish(JANITOR_SUBJECTS.removed, {
    type: 'removed',
    ...rest,
    bytes_freed: bytes,
    reason: 'orphan',
  });
  ctx.logger.debug({ job_id: body.job_id, files: body.files, bytes }, 'Removed orphan files');
}

/** Work folders under `tmp/` older than any job may run and than the TTL: left by a crash. */
export async function sweepTmp(ctx: SweepContext, nowMs: number, totals: SweepTotals): Promise<void> {
  const { config, storage } = ctx;
  const cutoff = nowMs - Math.max(config.cacheTtlMs, config.downloadTimeoutMs, config.normalizeTimeoutMs);
  for await (const names of entryChunks(storage.tmp, ctx.batchSize)) {
    for (const name of names) {
      const path = join(storage.tmp, name);
      if (!(await modifiedBefore(path, cutoff))) continue;
      const bytes = await removePath(path);
      if (bytes === null) continue;
      const jobId = name.split('.')[0] ?? name;
      publishRemoved(ctx, { job_id: jobId, kind: null, key: null, files: [`tmp/${name}`], bytes }, totals);
    }
  }
}
