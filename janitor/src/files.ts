import { lstatSync, unlinkSync } from 'node:fs';
import { lstat, rm, unlink } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { dirChunks } from '@media-jobs/libs';

/**
 * File helpers for the sweep. Folders are streamed (`opendir`), never read whole, so a
 * sweep's memory does not grow with the number of files on disk.
 */

/** Names of the regular files in `dir`, in chunks. */
export function fileChunks(dir: string, size: number): AsyncGenerator<string[]> {
  return dirChunks(dir, size, true);
}

/** Every entry (file or folder) in `dir`, in chunks. */
export function entryChunks(dir: string, size: number): AsyncGenerator<string[]> {
  return dirChunks(dir, size, false);
}

/** The job id of a result file `<id>.<ext>` (the extension has no dot), or null. */
export function resultIdOf(name: string): string | null {
  const dot = name.indexOf('.');
  if (dot <= 0 || name.indexOf('.', dot + 1) !== -1 || dot === name.length - 1) return null;
  return name.slice(0, dot);
}

/**
 * Streams `dir` once and groups the files whose owner (per `ownerOf`) is wanted: one pass
 * per folder per batch instead of one `readdir` per job.
 */
export async function filesOwnedBy(
  dir: string,
  wanted: ReadonlySet<string>,
  ownerOf: (name: string) => string | null,
): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>();
  if (wanted.size === 0) return found;
  for await (const names of fileChunks(dir, 4096)) {
    for (const name of names) {
      const owner = ownerOf(name);
      if (owner === null || !wanted.has(owner)) continue;
      const list = found.get(owner) ?? [];
      list.push(join(dir, name));
      found.set(owner, list);
    }
  }
  return found;
}

/** Size of a file, or of a folder's files recursively; 0 when it is gone. */
export async function sizeOf(path: string): Promise<number> {
  try {
    const st = await lstat(path);
    if (!st.isDirectory()) return st.size;
    let total = 0;
    for await (const names of entryChunks(path, 256)) {
      for (const name of names) total += await sizeOf(join(path, name));
    }
    return total;
  } catch {
    return 0;
  }
}

/** Removes one path; returns the bytes freed, or null when it was already gone. */
export async function removePath(path: string): Promise<number | null> {
  try {
    const st = await lstat(path);
    if (!st.isDirectory()) {
      await unlink(path);
      return st.size;
    }
    const bytes = await sizeOf(path);
    await rm(path, { recursive: true, force: true });
    return bytes;
  } catch {
    return null;
  }
}

/** Runs `fn` over `items` with at most `limit` in flight (file system calls go to libuv's pool). */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Removes every owner's paths; returns per owner the files removed (relative to `root`) and
 * the bytes freed. Files go with synchronous calls, a chunk at a time between turns of the
 * event loop: an unlink costs the kernel more than the thread-pool round trip would save,
 * and the sweep is this process's only heavy work.
 */
export async function removeGrouped(
  root: string,
  paths: ReadonlyMap<string, readonly string[]>,
): Promise<Map<string, { files: string[]; bytes: number }>> {
  const out = new Map<string, { files: string[]; bytes: number }>();
  // Every path is `join(root, ...)`: slicing is exact and much cheaper than path.relative per file.
  const prefix = root.endsWith(sep) ? root : root + sep;
  const rel = (path: string) => (path.startsWith(prefix) ? path.slice(prefix.length) : relative(root, path));
  let sinceYield = 0;
  for (const [owner, list] of paths) {
    for (const path of list) {
      const bytes = await removeOne(path);
      if (bytes === null) continue;
      const entry = out.get(owner) ?? { files: [], bytes: 0 };
      entry.files.push(rel(path));
      entry.bytes += bytes;
      out.set(owner, entry);
      if (++sinceYield >= 256) {
        sinceYield = 0;
        await new Promise((r) => setImmediate(r));
      }
    }
  }
  return out;
}

/** One path: a file synchronously, a folder (never a job's result, but possible) with `removePath`. */
async function removeOne(path: string): Promise<number | null> {
  try {
    const st = lstatSync(path);
    if (st.isDirectory()) return removePath(path);
    unlinkSync(path);
    return st.size;
  } catch {
    return null;
  }
}
