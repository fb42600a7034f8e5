import { createReadStream } from 'node:fs';
import { lstat, mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Objm, type ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { StorageType } from '@nats-io/jetstream';
import { dirChunks } from './dir-chunks.js';

/**
 * Where finished files live: the folders under `DATA_DIR` (`STORAGE=local`) or JetStream
 * Object Store buckets of the same names (`STORAGE=nats`), so no two services need to share
 * a disk. Names are the file names of DESIGN.md (`<id>.<ext>`, `<sha256>.<ext>`). Work in
 * progress stays in a local `tmp/`; a finished file is `put` from there.
 */
export const BUCKETS = ['downloads', 'uploads', 'normalized'] as const;
export type Bucket = (typeof BUCKETS)[number];

export interface StoredFile {
  readonly name: string;
  readonly size: number;
  /** Last change, epoch ms. */
  readonly mtimeMs: number;
}

/** Inclusive byte range, as HTTP's Range header gives it. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

export interface FileStore {
  readonly kind: 'local' | 'nats';
  /** Creates folders or buckets; idempotent. */
  ensure(): Promise<void>;
  /** Moves a finished local file in under `name` (the source is gone afterwards), replacing any file of that name. */
  put(bucket: Bucket, name: string, fromPath: string): Promise<StoredFile>;
  stat(bucket: Bucket, name: string): Promise<StoredFile | null>;
  /** The bytes of the file (or of `range`), streamed; null when it is gone. */
  read(bucket: Bucket, name: string, range?: ByteRange): Promise<Readable | null>;
  /** Removes these files, ignoring those already gone; returns what was removed. */
  remove(bucket: Bucket, names: readonly string[]): Promise<{ removed: StoredFile[]; bytes: number }>;
  /** Every file of the bucket, in chunks of about `size`; memory does not grow with the bucket. */
  list(bucket: Bucket, size: number): AsyncIterable<StoredFile[]>;
  /** The files whose name starts with `prefix` (`<id>.` finds a job's result of any extension). */
  find(bucket: Bucket, prefix: string): Promise<StoredFile[]>;
}

/** `STORAGE=local`: `DATA_DIR/<bucket>/<name>`; a put is a rename from `tmp/` (same file system). */
export class LocalFileStore implements FileStore {
  readonly kind = 'local' as const;

  constructor(readonly root: string) {}

  private path(bucket: Bucket, name: string): string {
    return join(this.root, bucket, name);
  }

  async ensure(): Promise<void> {
    for (const bucket of BUCKETS) await mkdir(join(this.root, bucket), { recursive: true });
  }

  async put(bucket: Bucket, name: string, fromPath: string): Promise<StoredFile> {
    const target = this.path(bucket, name);
    await rename(fromPath, target);
    const st = await stat(target);
    return { name, size: st.size, mtimeMs: st.mtimeMs };
  }

  async stat(bucket: Bucket, name: string): Promise<StoredFile | null> {
    try {
      const st = await lstat(this.path(bucket, name));
      return st.isFile() ? { name, size: st.size, mtimeMs: st.mtimeMs } : null;
    } catch {
      return null;
    }
  }

  async read(bucket: Bucket, name: string, range?: ByteRange): Promise<Readable | null> {
    if (!(await this.stat(bucket, name))) return null;
    return createReadStream(this.path(bucket, name), range ? { start: range.start, end: range.end } : {});
  }

  async remove(bucket: Bucket, names: readonly string[]): Promise<{ removed: StoredFile[]; bytes: number }> {
    const removed: StoredFile[] = [];
    let bytes = 0;
    for (const name of names) {
      const file = await this.stat(bucket, name);
      if (!file) continue;
      await rm(this.path(bucket, name), { force: true });
      removed.push(file);
      bytes += file.size;
    }
    return { removed, bytes };
  }

  async *list(bucket: Bucket, size: number): AsyncIterable<StoredFile[]> {
    const dir = join(this.root, bucket);
    for await (const names of dirChunks(dir, size, true)) {
      const files: StoredFile[] = [];
      for (const name of names) {
        const file = await this.stat(bucket, name);
        if (file) files.push(file);
      }
      yield files;
    }
  }

  async find(bucket: Bucket, prefix: string): Promise<StoredFile[]> {
    const found: StoredFile[] = [];
    for await (const files of this.list(bucket, 4096)) {
      found.push(...files.filter((f) => f.name.startsWith(prefix)));
    }
    return found;
  }
}

/**
 * `STORAGE=nats`: one JetStream Object Store bucket per folder, with `replicas` replicas.
 * Objects are written in chunks from the local file and read back as a stream; a range read
 * skips to its start (the object store has no seek), which costs the bytes before it.
 */
export class NatsFileStore implements FileStore {
  readonly kind = 'nats' as const;
  private readonly objm: Objm;
  private readonly stores = new Map<Bucket, Promise<ObjectStore>>();

  constructor(
    nc: NatsConnection,
    private readonly replicas = 1,
  ) {
    this.objm = new Objm(nc);
  }

  private bucket(bucket: Bucket): Promise<ObjectStore> {
    let store = this.stores.get(bucket);
    if (!store) {
      store = this.objm.create(bucket, { replicas: this.replicas, storage: StorageType.File });
      // A failed open is tried again on the next call.
      store.catch(() => this.stores.delete(bucket));
      this.stores.set(bucket, store);
    }
    return store;
  }

  async ensure(): Promise<void> {
    for (const bucket of BUCKETS) await this.bucket(bucket);
  }

  async put(bucket: Bucket, name: string, fromPath: string): Promise<StoredFile> {
    const store = await this.bucket(bucket);
    const source = Readable.toWeb(createReadStream(fromPath)) as unknown as ReadableStream<Uint8Array>;
    const info = await store.put({ name }, source);
    await rm(fromPath, { force: true });
    return { name, size: info.size, mtimeMs: Date.parse(info.mtime) };
  }

  async stat(bucket: Bucket, name: string): Promise<StoredFile | null> {
    const info = await (await this.bucket(bucket)).info(name);
    return info && !info.deleted ? { name, size: info.size, mtimeMs: Date.parse(info.mtime) } : null;
  }

  async read(bucket: Bucket, name: string, range?: ByteRange): Promise<Readable | null> {
    const result = await (await this.bucket(bucket)).get(name);
    if (!result) return null;
    const stream = Readable.fromWeb(result.data as unknown as WebReadableStream<Uint8Array>);
    // A corrupt object (digest mismatch) ends the stream with an error instead of silently.
    void result.error.then((err) => {
      if (err) stream.destroy(err);
    });
    return range ? stream.pipe(byteWindow(range)) : stream;
  }

  async remove(bucket: Bucket, names: readonly string[]): Promise<{ removed: StoredFile[]; bytes: number }> {
    const store = await this.bucket(bucket);
    const removed: StoredFile[] = [];
    let bytes = 0;
    for (const name of names) {
      const file = await this.stat(bucket, name);
      if (!file) continue;
      await store.delete(name);
      removed.push(file);
      bytes += file.size;
    }
    return { removed, bytes };
  }

  async *list(bucket: Bucket, size: number): AsyncIterable<StoredFile[]> {
    const infos = await (await this.bucket(bucket)).list();
    for (let i = 0; i < infos.length; i += size) {
      yield infos
        .slice(i, i + size)
        .filter((info) => !info.deleted)
        .map((info) => ({ name: info.name, size: info.size, mtimeMs: Date.parse(info.mtime) }));
    }
  }

  async find(bucket: Bucket, prefix: string): Promise<StoredFile[]> {
    const found: StoredFile[] = [];
    for await (const files of this.list(bucket, 4096)) {
      found.push(...files.filter((f) => f.name.startsWith(prefix)));
    }
    return found;
  }
}

/** Passes on only the bytes of `range` (inclusive) and ends the stream after them. */
function byteWindow(range: ByteRange): Transform {
  let offset = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      const from = Math.max(0, range.start - offset);
      const to = Math.min(chunk.length, range.end + 1 - offset);
      offset += chunk.length;
      if (to > from) this.push(chunk.subarray(from, to));
      if (offset > range.end) this.push(null);
      done();
    },
  });
}
