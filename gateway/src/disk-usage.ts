import { lstat, opendir } from 'node:fs/promises';
import { join } from 'node:path';
import { BUCKETS, bucketUsage, type Bucket, type FileStore, type Storage } from '@media-jobs/libs';

export interface FolderUsage {
  files: number;
  bytes: number;
}

/**
 * Files and bytes under a folder. Every step is an awaited fs call, so a folder of a million
 * files costs time on the thread pool and never blocks the event loop; a missing folder is empty.
 */
export async function folderUsage(dir: string): Promise<FolderUsage> {
  const usage = { files: 0, bytes: 0 };
  let handle;
  try {
    handle = await opendir(dir);
  } catch {
    return usage;
  }
  for await (const entry of handle) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      const inner = await folderUsage(path);
      usage.files += inner.files;
      usage.bytes += inner.bytes;
    } else {
      usage.files += 1;
      // A file removed between the listing and the stat counts as nothing.
      usage.bytes += await lstat(path).then(
        (st) => st.size,
        () => 0,
      );
    }
  }
  return usage;
}

/**
 * Files and bytes of each place a result or upload lives, and of this gateway's `tmp/`: the
 * folders under DATA_DIR (`STORAGE=local`) or the buckets (`STORAGE=nats`). One after
 * another: a scan is background work and should not crowd the thread pool.
 */
export async function storageUsage(
  files: FileStore,
  storage: Storage,
): Promise<Record<Bucket | 'tmp', FolderUsage>> {
  const out = {} as Record<Bucket | 'tmp', FolderUsage>;
  for (const bucket of BUCKETS) {
    const local = files.localPath(bucket, '');
    out[bucket] = local !== null ? await folderUsage(local) : await bucketUsage(files, bucket);
  }
  out.tmp = await folderUsage(storage.tmp);
  return out;
}
