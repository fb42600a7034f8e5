import { lstat, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { BUCKETS, dirChunks, type Bucket, type FileStore } from '@media-jobs/libs';

/**
 * File helpers for the sweep. Folders and buckets are streamed, never read whole, so a
 * sweep's memory does not grow with the number of files stored.
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

/** A stored file: its bucket and name. */
export interface StoredRef {
  readonly bucket: Bucket;
  readonly name: string;
}

/**
 * Lists `bucket` once and groups the files whose owner (per `ownerOf`) is wanted: one pass
 * per bucket per batch instead of one listing per job.
 */
export async function filesOwnedBy(
  files: FileStore,
  bucket: Bucket,
  wanted: ReadonlySet<string>,
  ownerOf: (name: string) => string | null,
): Promise<Map<string, StoredRef[]>> {
  const found = new Map<string, StoredRef[]>();
  if (wanted.size === 0) return found;
  for await (const names of files.names(bucket, 4096)) {
    for (const name of names) {
      const owner = ownerOf(name);
      if (owner === null || !wanted.has(owner)) continue;
      const list = found.get(owner) ?? [];
      list.push({ bucket, name });
      found.set(owner, list);
    }
  }
  return found;
}

/** The result files `<id>.<ext>` of the wanted ids under each of `exts`, by one stat per name (no listing). */
export async function filesNamed(
  files: FileStore,
  bucket: Bucket,
  wanted: ReadonlySet<string>,
  exts: readonly string[],
): Promise<Map<string, StoredRef[]>> {
  const found = new Map<string, StoredRef[]>();
  const names = [...wanted].flatMap((id) => exts.map((ext) => ({ id, name: `${id}.${ext}` })));
  const hits = await mapLimit(names, 32, async (n) => ((await files.stat(bucket, n.name)) ? n : null));
  for (const hit of hits) {
    if (!hit) continue;
    const list = found.get(hit.id) ?? [];
    list.push({ bucket, name: hit.name });
    found.set(hit.id, list);
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
 * Removes every owner's files, one store call per bucket; returns per owner the files removed
 * (`<bucket>/<name>`, as relative to DATA_DIR) and the bytes freed.
 */
export async function removeGrouped(
  files: FileStore,
  refs: ReadonlyMap<string, readonly StoredRef[]>,
): Promise<Map<string, { files: string[]; bytes: number }>> {
  const out = new Map<string, { files: string[]; bytes: number }>();
  for (const bucket of BUCKETS) {
    const ownerOf = new Map<string, string>();
    for (const [owner, list] of refs) {
      for (const ref of list) if (ref.bucket === bucket) ownerOf.set(ref.name, owner);
    }
    if (ownerOf.size === 0) continue;
    const { removed } = await files.remove(bucket, [...ownerOf.keys()]);
    for (const file of removed) {
      const owner = ownerOf.get(file.name) as string;
      const entry = out.get(owner) ?? { files: [], bytes: 0 };
      entry.files.push(`${bucket}/${file.name}`);
      entry.bytes += file.size;
      out.set(owner, entry);
    }
  }
  return out;
}
