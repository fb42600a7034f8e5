import type { Redis } from 'ioredis';
import { unavailable } from './errors.js';
import { asFileStore, parseStoredPath, type FileStore } from './file-store.js';
import { releaseJobFiles, removeStored } from './job-files.js';
import { jobKey, jobRecordSchema, type JobKind, type JobRecord } from './job-record.js';
import { ACTIVE_INDEX, EXPIRY_INDEX } from './job-store.js';
import { LuaScript } from './lua.js';
import { removeFiles, type Storage } from './storage.js';
import { lockToken, releaseIfOwner, retryWhileBusy, sweepingKey, TOMBSTONE_TTL_MS } from './sweep-lock.js';

/**
 * Deleting a job's files safely, outside the janitor. The rule is the janitor's: a job key's
 * files are removed only while its tombstone `sweeping:<key>` is held, and the tombstone is
 * set in the same Lua step that finds the record gone (or deletes it), so `JobStore.create`
 * cannot create a new job with that id until the old files are gone. Without it, a new
 * identical submission could complete between the record's deletion and the file removal,
 * and lose its file to it.
 */

/** Test seams between the steps of one deletion, to make interleavings deterministic. */
export interface DeletionHooks {
  /** Record and index entries deleted, tombstone set; no file removed yet. */
  afterClaim?(key: string): Promise<void>;
  /** Files removed; the tombstone is still held. */
  afterFiles?(key: string): Promise<void>;
}

// Deletes record, index entries and sets the tombstone in one step, and returns what was
// stored; nil when there is no record; {'busy'} while another deletion holds the tombstone.
// KEYS: record, expiry index, active index, tombstone. ARGV: token, tombstone ttl ms.
const CLAIM_DELETE = new LuaScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
if redis.call('EXISTS', KEYS[4]) == 1 then return {'busy'} end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('ZREM', KEYS[3], KEYS[1])
redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2])
return cur
`);

export interface DeletedJob {
  readonly record: JobRecord;
  /** Files removed (`storedPath`: a local path, or `<bucket>/<name>` for an object). */
  readonly removed: string[];
  readonly bytes: number;
}

/**
 * `DELETE /jobs/:id`: removes the record (and its index entries) and then its files, holding
 * the key's tombstone from the first step to the last. Returns null when there is no such
 * record; a 503 when another deletion of the same key does not end within the tombstone wait.
 */
export async function deleteJob(
  redis: Redis,
  storage: Storage | FileStore,
  kind: JobKind,
  id: string,
  hooks: DeletionHooks = {},
): Promise<DeletedJob | null> {
  const key = jobKey(kind, id);
  const tombstone = sweepingKey(key);
  const token = lockToken();
  const raw = await retryWhileBusy(
    async () => {
      const reply = (await CLAIM_DELETE.run(
        redis,
        [key, EXPIRY_INDEX, ACTIVE_INDEX, tombstone],
        [token, TOMBSTONE_TTL_MS],
      )) as string | [string] | null;
      return Array.isArray(reply) ? 'busy' : reply;
    },
    () => unavailable('job.sweeping', 'this job is being cleaned up; try again shortly'),
  );
  if (raw === null) return null;
  try {
    const record = jobRecordSchema.parse(JSON.parse(raw));
    await hooks.afterClaim?.(key);
    const freed = await releaseJobFiles(redis, storage, kind, id);
    await hooks.afterFiles?.(key);
    return { record, removed: freed.removed, bytes: freed.bytes };
  } finally {
    // Left to expire if Redis is away now: a new job then waits at most the tombstone's TTL.
    await releaseIfOwner(redis, tombstone, token).catch(() => false);
  }
}

// Takes the tombstone of a job key that has no record, no index entry and no tombstone.
// Answers 'live' (a record exists: the files may be its), 'sweep' (the index still holds the
// key: the janitor will remove its files), 'busy' (another deletion holds the tombstone) or 'ok'.
// KEYS: record, expiry index, tombstone. ARGV: token, tombstone ttl ms.
const CLAIM_DISCARD = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 'live' end
if redis.call('EXISTS', KEYS[3]) == 1 then return 'busy' end
if redis.call('ZSCORE', KEYS[2], KEYS[1]) then return 'sweep' end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
return 'ok'
`);

/**
 * `kept_unsure`: Redis did not answer, or another deletion of the key outlasted the wait; the
 * files stay, and with no record they are orphans that the janitor's orphan pass removes.
 */
export type DiscardOutcome = 'removed' | 'kept_live' | 'left_to_sweep' | 'kept_unsure';

/**
 * Removes the output of a run whose job was deleted or replaced meanwhile (its final
 * compare-and-set failed). Result paths are per job id, so the files may already be, or may
 * at any moment become, those of a newer job with the same id: they are removed only under
 * the key's tombstone, taken when no record exists, so no new job can be created (and write
 * there) until they are gone. When a record exists the files stay: they are that job's, or
 * the same id's same content about to be replaced by its own run, and go with that record.
 * `files` are `storedPath`s of `store` (local paths when it is omitted). Never throws.
 */
export async function discardStaleOutput(
  redis: Redis,
  kind: JobKind,
  id: string,
  files: readonly string[],
  store?: FileStore,
): Promise<DiscardOutcome> {
  const key = jobKey(kind, id);
  const tombstone = sweepingKey(key);
  const token = lockToken();
  let claim: string;
  try {
    claim = await retryWhileBusy(
      async () => {
        const reply = (await CLAIM_DISCARD.run(
          redis,
          [key, EXPIRY_INDEX, tombstone],
          [token, TOMBSTONE_TTL_MS],
        )) as string;
        return reply === 'busy' ? 'busy' : reply;
      },
      () => new Error(`the tombstone of ${key} stayed held`),
    );
  } catch {
    return 'kept_unsure';
  }
  if (claim === 'live') return 'kept_live';
  if (claim === 'sweep') return 'left_to_sweep';
  try {
    await removeOutput(files, store);
    return 'removed';
  } catch {
    // The object store did not answer: what is left has no record, so the orphan pass takes it.
    return 'kept_unsure';
  } finally {
    await releaseIfOwner(redis, tombstone, token).catch(() => false);
  }
}

/** Stored files through the store, anything else (a local path) directly. */
async function removeOutput(files: readonly string[], store: FileStore | undefined): Promise<void> {
  const stored = store ? asFileStore(store) : null;
  const entries = stored ? files.map((f) => parseStoredPath(stored, f)) : [];
  if (stored)
    await removeStored(
      stored,
      entries.filter((e) => e !== null),
    );
  await removeFiles(files.filter((_, i) => !entries[i]));
}
