import type { Redis } from 'ioredis';
import type { JobKind } from './job-record.js';
import { jobKey } from './job-record.js';
import { unavailable } from './errors.js';
import { asFileStore, BUCKETS, findResults, storedPath, type Bucket, type FileStore } from './file-store.js';
import type { Storage } from './storage.js';
import { lockToken, releaseIfOwner, retryWhileBusy, sweepingKey, TOMBSTONE_TTL_MS } from './sweep-lock.js';

/**
 * Which files belong to a job is derived from its kind and id alone, so a job whose record
 * Redis already expired can still have every file removed:
 * - download `<id>`: `downloads/<id>.<ext>`;
 * - normalize `<hex16>_<ops>`: `normalized/<id>.<ext>`, and the shared upload
 *   `uploads/<sha256>.<ext>` whose sha256 starts with `<hex16>`, kept while any other job
 *   still uses it (set `upload_refs:<hex16>` of job keys).
 */
export function uploadRefsKey(hex16: string): string {
  return `upload_refs:${hex16}`;
}

/** The upload's short hash of a normalize job id (`<hex16>_<ops>`). */
export function uploadHashOf(normalizeJobId: string): string {
  return normalizeJobId.slice(0, 16);
}

/** The tombstone held while an upload with no users left is being deleted. */
export function uploadSweepingKey(hex16: string): string {
  return sweepingKey(uploadRefsKey(hex16));
}

// Adds the job's reference unless the upload is being deleted (answers 0: busy).
// KEYS: refs set, tombstone. ARGV: job key.
const RETAIN = `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
`;

/**
 * Records that a normalize job uses the upload with this sha256. Waits while the last
 * user's release is deleting that upload, so call it after the claim and before placing
 * the upload file in `uploads/`: a deletion in progress then only removes the old copy.
 */
export async function retainUpload(redis: Redis, normalizeJobId: string): Promise<void> {
  const hex16 = uploadHashOf(normalizeJobId);
  const keys = [uploadRefsKey(hex16), uploadSweepingKey(hex16)];
  const member = jobKey('normalize', normalizeJobId);
  await retryWhileBusy(
    async () => (((await redis.eval(RETAIN, 2, ...keys, member)) as number) === 1 ? true : 'busy'),
    () => unavailable('upload.sweeping', 'this upload is being cleaned up; try again shortly'),
  );
}

// Drops each job's reference; when none is left for an upload, sets its tombstone so that no
// job retains it while its files are deleted. Returns 1 per job whose release was the last.
// KEYS: (refs set, tombstone) per job. ARGV: token, tombstone ttl ms, job keys...
const RELEASE = `
local out = {}
for i = 1, #ARGV - 2 do
  local refs, tomb = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('SREM', refs, ARGV[i + 2])
  out[i] = 0
  if redis.call('SCARD', refs) == 0 then
    redis.call('DEL', refs)
    redis.call('SET', tomb, ARGV[1], 'PX', ARGV[2])
    out[i] = 1
  end
end
return out
`;

/**
 * Drops normalize jobs' references to their uploads, in one round trip. For each job, true
 * when it was the upload's last user: the caller then owns that upload's deletion under
 * `token` and ends it with `endUploadRelease` (or `releaseManyIfOwner` on the tombstones).
 */
export async function releaseUploadRefs(
  redis: Redis,
  normalizeJobIds: readonly string[],
  token: string,
): Promise<boolean[]> {
  if (normalizeJobIds.length === 0) return [];
  const keys = normalizeJobIds.flatMap((id) => [
    uploadRefsKey(uploadHashOf(id)),
    uploadSweepingKey(uploadHashOf(id)),
  ]);
  const members = normalizeJobIds.map((id) => jobKey('normalize', id));
  const flags = (await redis.eval(
    RELEASE,
    keys.length,
    ...keys,
    token,
    TOMBSTONE_TTL_MS,
    ...members,
  )) as number[];
  return flags.map((f) => f === 1);
}

/** `releaseUploadRefs` for one job. */
export async function releaseUploadRef(
  redis: Redis,
  normalizeJobId: string,
  token: string,
): Promise<boolean> {
  const [last] = await releaseUploadRefs(redis, [normalizeJobId], token);
  return last === true;
}

export async function endUploadRelease(redis: Redis, hex16: string, token: string): Promise<void> {
  await releaseIfOwner(redis, uploadSweepingKey(hex16), token);
}

/** The result files a job owns alone (not the shared upload). */
export async function resultFiles(
  storage: Storage | FileStore,
  kind: JobKind,
  id: string,
): Promise<string[]> {
  const files = asFileStore(storage);
  const bucket = resultBucket(kind);
  return (await findResults(files, bucket, id)).map((f) => storedPath(files, bucket, f.name));
}

export function resultBucket(kind: JobKind): Bucket {
  return kind === 'download' ? 'downloads' : 'normalized';
}

/** Removes stored files by bucket; returns their `storedPath`s and the bytes freed. */
export async function removeStored(
  files: FileStore,
  entries: readonly { bucket: Bucket; name: string }[],
): Promise<{ removed: string[]; bytes: number }> {
  const removed: string[] = [];
  let bytes = 0;
  for (const bucket of BUCKETS) {
    const names = entries.filter((e) => e.bucket === bucket).map((e) => e.name);
    if (names.length === 0) continue;
    const out = await files.remove(bucket, names);
    removed.push(...out.removed.map((f) => storedPath(files, bucket, f.name)));
    bytes += out.bytes;
  }
  return { removed, bytes };
}

/**
 * Removes a job's result files and, for a normalize job, its reference to the upload; the
 * upload itself goes when no job uses it any more. Call after the record is removed.
 */
export async function releaseJobFiles(
  redis: Redis,
  storage: Storage | FileStore,
  kind: JobKind,
  id: string,
): Promise<{ removed: string[]; bytes: number }> {
  const files = asFileStore(storage);
  const bucket = resultBucket(kind);
  const entries = (await findResults(files, bucket, id)).map((f) => ({ bucket, name: f.name }));
  if (kind !== 'normalize') return removeStored(files, entries);
  const hex16 = uploadHashOf(id);
  const token = lockToken();
  const last = await releaseUploadRef(redis, id, token);
  if (last) {
    const uploads = await files.find('uploads', hex16);
    entries.push(...uploads.map((f) => ({ bucket: 'uploads' as const, name: f.name })));
  }
  try {
    return await removeStored(files, entries);
  } finally {
    if (last) await endUploadRelease(redis, hex16, token);
  }
}
