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

export async function sweepOrphans(ctx: SweepContext, nowMs: number, totals: SweepTotals): Promise<void> {
  const cutoff = nowMs - ctx.config.cacheTtlMs;
  const token = lockToken();
  for (const folder of folders()) {
    for await (const files of ctx.files.list(folder.bucket, ctx.batchSize)) {
      if (!ctx.stillOwner()) return;
      await orphanChunk(ctx, folder, files, cutoff, token, totals);
    }
  }
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
) {
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
    for (const [owner, r] of removed) reportOrphan(ctx, folder, owner, r, totals);
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
