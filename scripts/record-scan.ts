import { basename } from 'node:path';
import {
  EXPIRY_INDEX,
  asFileStore,
  jobRecordSchema,
  storedPath,
  type Bucket,
  type FileStore,
  type JobKind,
  type JobRecord,
  type Redis,
  type Storage,
} from '@media-jobs/libs';

/**
 * The end-of-run check of `npm run chaos`: once the load has settled, no job may be stuck and
 * nothing may be orphaned. Precisely, reading every record (SCAN `job:*`, `audio_job:*`), the
 * expiry index and the result and upload folders (or buckets):
 * - stuck: a record whose status is `queued` or `processing`;
 * - orphaned:
 *   - a `completed` record whose result file (`result.file` in `downloads/` or `normalized/`)
 *     is missing;
 *   - an entry of `jobs:expiry` that is not yet expired and has no record;
 *   - a file in `downloads/` or `normalized/` with no record of its job id, or in `uploads/`
 *     with no normalize record whose id starts with the upload's first 16 hex digits;
 * - unreadable: a record that is not a valid job record (counted as orphaned).
 * (`tmp/` leftovers are counted on their own by the chaos report.)
 */

export interface Offender {
  readonly what: 'stuck' | 'orphaned';
  /** The record key, index member or file path. */
  readonly subject: string;
  readonly reason: string;
}

export interface RecordScan {
  readonly records: number;
  readonly indexEntries: number;
  readonly files: number;
  readonly offenders: Offender[];
}

const SCAN_PATTERNS = ['job:*', 'audio_job:*'];

async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const keys = new Set<string>();
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
    for (const k of batch) keys.add(k);
    cursor = next;
  } while (cursor !== '0');
  return [...keys];
}

async function readRecords(redis: Redis, offenders: Offender[]): Promise<Map<string, JobRecord>> {
  const records = new Map<string, JobRecord>();
  for (const pattern of SCAN_PATTERNS) {
    const keys = await scanKeys(redis, pattern);
    for (let i = 0; i < keys.length; i += 200) {
      const batch = keys.slice(i, i + 200);
      const raws = await redis.mget(...batch);
      batch.forEach((key, j) => {
        const raw = raws[j];
        if (raw == null) return; // expired or deleted between SCAN and MGET
        const parsed = jobRecordSchema.safeParse(safeJson(raw));
        if (parsed.success) records.set(key, parsed.data);
        else offenders.push({ what: 'orphaned', subject: key, reason: 'not a valid job record' });
      });
    }
  }
  return records;
}

function safeJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return null;
  }
}

async function names(store: FileStore, bucket: Bucket): Promise<string[]> {
  const out: string[] = [];
  for await (const chunk of store.names(bucket, 1000)) out.push(...chunk);
  return out;
}

const resultBucket = (kind: JobKind): Bucket => (kind === 'download' ? 'downloads' : 'normalized');

/** The scan described above, at `nowMs`, of the DATA_DIR folders or of any file store (`STORAGE=nats`). */
export async function scanRecords(
  redis: Redis,
  storage: Storage | FileStore,
  nowMs = Date.now(),
): Promise<RecordScan> {
  const store = asFileStore(storage);
  const offenders: Offender[] = [];
  const records = await readRecords(redis, offenders);
  const files = {
    download: new Set(await names(store, 'downloads')),
    normalize: new Set(await names(store, 'normalized')),
  };
  const uploads = await names(store, 'uploads');

  for (const [key, r] of records) {
    if (r.status === 'queued' || r.status === 'processing') {
      const reason = `status ${r.status} since ${r.updated_at} (attempts ${r.attempts})`;
      offenders.push({ what: 'stuck', subject: key, reason });
    } else if (r.status === 'completed') {
      const file = typeof r.result?.file === 'string' ? basename(r.result.file) : null;
      if (!file || !files[r.kind].has(file)) {
        const where = storedPath(store, resultBucket(r.kind), file ?? '?');
        offenders.push({ what: 'orphaned', subject: key, reason: `completed, result file ${where} missing` });
      }
    }
  }

  const live = await redis.zrangebyscore(EXPIRY_INDEX, `(${nowMs}`, '+inf');
  for (const key of live) {
    if (records.has(key) || (await redis.exists(key)) === 1) continue;
    offenders.push({
      what: 'orphaned',
      subject: `${EXPIRY_INDEX} ${key}`,
      reason: 'index entry, not expired, no record',
    });
  }

  const ids = new Set([...records.values()].map((r) => `${r.kind}:${r.id}`));
  for (const kind of ['download', 'normalize'] as const) {
    for (const name of files[kind]) {
      const id = name.slice(0, name.indexOf('.') === -1 ? name.length : name.indexOf('.'));
      if (!ids.has(`${kind}:${id}`)) {
        const path = storedPath(store, resultBucket(kind), name);
        offenders.push({ what: 'orphaned', subject: path, reason: `result file, no ${kind} record ${id}` });
      }
    }
  }
  const uploadUsers = new Set(
    [...records.values()].filter((r) => r.kind === 'normalize').map((r) => r.id.slice(0, 16)),
  );
  for (const name of uploads) {
    if (!uploadUsers.has(name.slice(0, 16))) {
      const path = storedPath(store, 'uploads', name);
      offenders.push({ what: 'orphaned', subject: path, reason: 'upload, no normalize record uses it' });
    }
  }

  return {
    records: records.size,
    indexEntries: live.length,
    files: files.download.size + files.normalize.size + uploads.length,
    offenders,
  };
}

/** For the report's row: `0` or `3 (1 stuck, 2 orphaned)`, with what was scanned. */
export function describeScan(scan: RecordScan): string {
  const stuck = scan.offenders.filter((o) => o.what === 'stuck').length;
  const orphaned = scan.offenders.length - stuck;
  const found =
    scan.offenders.length === 0 ? '0' : `${scan.offenders.length} (${stuck} stuck, ${orphaned} orphaned)`;
  return `${found} (scanned ${scan.records} records, ${scan.indexEntries} live index entries, ${scan.files} files)`;
}
