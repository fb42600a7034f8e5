import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** The folders under DATA_DIR. Results are renamed into place from `tmp/` when complete. */
export interface Storage {
  readonly root: string;
  readonly downloads: string;
  readonly uploads: string;
  readonly normalized: string;
  readonly tmp: string;
}

export function createStorage(dataDir: string): Storage {
  return {
    root: dataDir,
    downloads: join(dataDir, 'downloads'),
    uploads: join(dataDir, 'uploads'),
    normalized: join(dataDir, 'normalized'),
    tmp: join(dataDir, 'tmp'),
  };
}

export async function ensureStorage(storage: Storage): Promise<void> {
  for (const dir of [storage.downloads, storage.uploads, storage.normalized, storage.tmp]) {
    await mkdir(dir, { recursive: true });
  }
}

/** A fresh private work folder under `tmp/`, named after the job so a sweep can tell whose it is. */
export async function makeWorkDir(storage: Storage, jobId: string): Promise<string> {
  const dir = join(storage.tmp, `${jobId}.${randomBytes(4).toString('hex')}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Result files of a job id in a folder: `<id>.<ext>` (the extension is not known in advance). */
export async function findResultFiles(dir: string, jobId: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.startsWith(`${jobId}.`) && !n.slice(jobId.length + 1).includes('.'))
    .map((n) => join(dir, n));
}

/** Removes files, ignoring those already gone; returns the paths removed and the bytes freed. */
export async function removeFiles(paths: string[]): Promise<{ removed: string[]; bytes: number }> {
  const removed: string[] = [];
  let bytes = 0;
  for (const path of paths) {
    try {
      const st = await stat(path);
      await rm(path, { force: true, recursive: true });
      removed.push(path);
      bytes += st.size;
    } catch {
      // Already gone.
    }
  }
  return { removed, bytes };
}
