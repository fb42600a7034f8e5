import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { JobKind } from './job-record.js';
import { jobKey } from './job-record.js';
import { findResultFiles, removeFiles, type Storage } from './storage.js';

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

/** Records that a normalize job uses the upload with this sha256. Called when the job is created. */
export async function retainUpload(redis: Redis, normalizeJobId: string): Promise<void> {
  await redis.sadd(uploadRefsKey(uploadHashOf(normalizeJobId)), jobKey('normalize', normalizeJobId));
}

// Drops one job's reference; returns the references left. KEYS: refs set. ARGV: job key.
const RELEASE = `
redis.call('SREM', KEYS[1], ARGV[1])
local left = redis.call('SCARD', KEYS[1])
if left == 0 then redis.call('DEL', KEYS[1]) end
return left
`;

async function uploadFiles(storage: Storage, hex16: string): Promise<string[]> {
  try {
    return (await readdir(storage.uploads)).filter((n) => n.startsWith(hex16)).map((n) => join(storage.uploads, n));
  } catch {
    return [];
  }
}

/** The result files a job owns alone (not the shared upload). */
export async function resultFiles(storage: Storage, kind: JobKind, id: string): Promise<string[]> {
  return findResultFiles(kind === 'download' ? storage.downloads : storage.normalized, id);
}

/**
 * Removes a job's result files and, for a normalize job, its reference to the upload; the
 * upload itself goes when no job uses it any more. Call after the record is removed.
 */
export async function releaseJobFiles(
  redis: Redis,
  storage: Storage,
  kind: JobKind,
  id: string,
): Promise<{ removed: string[]; bytes: number }> {
  const paths = await resultFiles(storage, kind, id);
  if (kind === 'normalize') {
    const hex16 = uploadHashOf(id);
    const left = (await redis.eval(RELEASE, 1, uploadRefsKey(hex16), jobKey(kind, id))) as number;
    if (left === 0) paths.push(...(await uploadFiles(storage, hex16)));
  }
  return removeFiles(paths);
}
