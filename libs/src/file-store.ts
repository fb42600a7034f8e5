import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, lstatSync, opendirSync, unlinkSync, type Dir } from 'node:fs';
import { lstat, mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Objm, type ObjectInfo, type ObjectStore } from '@nats-io/obj';
import { headers, type NatsConnection } from '@nats-io/transport-node';
import {
  jetstream,
  jetstreamManager,
  StorageType,
  type JetStreamManager,
  type StoredMsg,
} from '@nats-io/jetstream';
import { dirChunks } from './dir-chunks.js';
import { unavailable } from './errors.js';

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

/** A chunk of `FileStore.scan`: its files and the cursor that resumes after it. */
export interface ScanChunk {
  readonly files: StoredFile[];
  /** Entries this chunk covered (files and anything else skipped), for progress counts. */
  readonly entries: number;
  readonly cursor: string;
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
  /** The names of every file of the bucket, in chunks; cheaper than `list` where sizes are not needed. */
  names(bucket: Bucket, size: number): AsyncIterable<string[]>;
  /**
   * The bucket's files from `cursor` on (null: from the start), in chunks of about `size`,
   * each with the cursor that resumes right after it, in this process or another one. The
   * iteration ends at the bucket's end. Local folders resume by position (entries read; this
   * process keeps the open folder between calls, so each entry present throughout is seen
   * once), object buckets by stream sequence. `removedBefore`: files the caller removed from
   * the part already scanned, so that a local scan resumed elsewhere skips that many fewer.
   */
  scan(bucket: Bucket, cursor: string | null, size: number, removedBefore?: number): AsyncIterable<ScanChunk>;
  /** Lets go of what scans in progress hold open (local folders); a later scan opens them again. */
  close(): Promise<void>;
  /** The files whose name starts with `prefix` (`<id>.` finds a job's result of any extension). */
  find(bucket: Bucket, prefix: string): Promise<StoredFile[]>;
  /** The file's own path when it is a local file a tool may read in place; null for objects. */
  localPath(bucket: Bucket, name: string): string | null;
}

/** `STORAGE=local`: `DATA_DIR/<bucket>/<name>`; a put is a rename from `tmp/` (same file system). */
export class LocalFileStore implements FileStore {
  readonly kind = 'local' as const;

  /** Open folders of scans in progress, so the next chunk of a scan need not re-read the entries before it. */
  private readonly scans = new Map<Bucket, { dir: Dir; position: number }>();

  constructor(readonly root: string) {}

  async close(): Promise<void> {
    const open = [...this.scans.values()];
    this.scans.clear();
    await Promise.all(open.map((o) => o.dir.close().catch(() => undefined)));
  }

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

  localPath(bucket: Bucket, name: string): string {
    return this.path(bucket, name);
  }

  /**
   * Synchronous unlinks, a chunk at a time between turns of the event loop: an unlink costs
   * the kernel more than a thread-pool round trip would save, and a sweep removes thousands.
   */
  async remove(bucket: Bucket, names: readonly string[]): Promise<{ removed: StoredFile[]; bytes: number }> {
    const removed: StoredFile[] = [];
    let bytes = 0;
    let sinceYield = 0;
    for (const name of names) {
      const path = this.path(bucket, name);
      try {
        const st = lstatSync(path);
        if (!st.isFile()) continue;
        unlinkSync(path);
        removed.push({ name, size: st.size, mtimeMs: st.mtimeMs });
        bytes += st.size;
      } catch {
        continue; // Already gone.
      }
      if (++sinceYield >= 256) {
        sinceYield = 0;
        await new Promise((r) => setImmediate(r));
      }
    }
    return { removed, bytes };
  }

  names(bucket: Bucket, size: number): AsyncIterable<string[]> {
    return dirChunks(join(this.root, bucket), size, true);
  }

  async *list(bucket: Bucket, size: number): AsyncIterable<StoredFile[]> {
    const dir = join(this.root, bucket);
    for await (const names of dirChunks(dir, size, true)) {
      // Synchronous stats, a chunk at a time: far cheaper per file than a thread-pool round trip.
      const files: StoredFile[] = [];
      for (const name of names) {
        try {
          const st = lstatSync(join(dir, name));
          if (st.isFile()) files.push({ name, size: st.size, mtimeMs: st.mtimeMs });
        } catch {
          // Removed since the listing.
        }
      }
      yield files;
    }
  }

  /**
   * Cursor: the number of entries read. A scan resumed at the position this process's open
   * folder stands at reads on from it; any other position (another process, a restart) opens
   * the folder again and skips that many entries less `removedBefore`, in chunks with no
   * files (entries others removed meanwhile make it skip some it never saw: a pass misses them).
   */
  async *scan(
    bucket: Bucket,
    cursor: string | null,
    size: number,
    removedBefore = 0,
  ): AsyncIterable<ScanChunk> {
    const folder = join(this.root, bucket);
    const at = cursor === null ? 0 : Math.max(0, Number.parseInt(cursor, 10) || 0);
    let want = at;
    let open = this.scans.get(bucket);
    if (open && open.position !== at) {
      this.closeScan(bucket);
      open = undefined;
    }
    if (!open) {
      want = Math.max(0, at - removedBefore);
      try {
        open = { dir: opendirSync(folder, { bufferSize: 2048 }), position: 0 };
      } catch {
        return; // No folder: nothing to scan.
      }
      this.scans.set(bucket, open);
    }
    const scan = open;
    // Skipping costs a fraction of a stat per entry, so it goes in chunks 16 times larger.
    while (scan.position < want) {
      let skipped = 0;
      while (scan.position < want && skipped < size * 16) {
        if (scan.dir.readSync() === null) {
          this.closeScan(bucket);
          return;
        }
        scan.position += 1;
        skipped += 1;
      }
      yield { files: [], entries: 0, cursor: String(scan.position) };
    }
    for (;;) {
      const files: StoredFile[] = [];
      let entries = 0;
      let ended = false;
      while (entries < size) {
        const entry = scan.dir.readSync();
        if (entry === null) {
          ended = true;
          break;
        }
        entries += 1;
        if (!entry.isFile()) continue;
        try {
          const st = lstatSync(join(folder, entry.name));
          if (st.isFile()) files.push({ name: entry.name, size: st.size, mtimeMs: st.mtimeMs });
        } catch {
          // Removed since the listing.
        }
      }
      scan.position += entries;
      if (ended) this.closeScan(bucket);
      if (entries > 0) yield { files, entries, cursor: String(scan.position) };
      if (ended) return;
    }
  }

  private closeScan(bucket: Bucket): void {
    const open = this.scans.get(bucket);
    this.scans.delete(bucket);
    try {
      open?.dir.closeSync();
    } catch {
      // Already closed.
    }
  }

  async find(bucket: Bucket, prefix: string): Promise<StoredFile[]> {
    const found: StoredFile[] = [];
    for await (const names of this.names(bucket, 4096)) {
      for (const name of names.filter((n) => n.startsWith(prefix))) {
        const file = await this.stat(bucket, name);
        if (file) found.push(file);
      }
    }
    return found;
  }
}

/**
 * Chunk size of the objects put: larger chunks mean fewer messages per object; under the
 * server's default 1 MiB max_payload.
 */
const CHUNK_BYTES = 512 * 1024;
/** Chunk publishes of one put awaiting their acks at a time. */
const PUT_IN_FLIGHT = 8;
const PUBLISH_TIMEOUT_MS = 30_000;
/** Object chunks asked for ahead of the reader; bounds a read's memory to this many chunks. */
const READ_AHEAD = 8;
/** How long a chunk the object's metadata promises may be missing (a replica catching up). */
const MISSING_CHUNK_WAIT_MS = 3000;

/**
 * `STORAGE=nats`: one JetStream Object Store bucket per folder, with `replicas` replicas.
 * Objects are in the object store's own format, so `nats object get` reads them. Reads fetch chunks with direct gets on demand, a few ahead, so
 * a slow HTTP client holds back the reads instead of filling memory; a range starts at the
 * chunk that holds its first byte (an object's chunks are one run of stream sequences unless
 * another put to the bucket interleaved, and then the read walks from the first chunk).
 * Listing walks the bucket's metadata subjects one message at a time.
 */
export class NatsFileStore implements FileStore {
  readonly kind = 'nats' as const;
  private readonly objm: Objm;
  private readonly stores = new Map<Bucket, Promise<ObjectStore>>();
  private jsmPromise: Promise<JetStreamManager> | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly replicas = 1,
  ) {
    this.objm = new Objm(nc);
  }

  /** Nothing is held open between scans: a scan resumes from its stream sequence. */
  close(): Promise<void> {
    return Promise.resolve();
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

  private jsm(): Promise<JetStreamManager> {
    if (!this.jsmPromise) {
      const jsm = jetstreamManager(this.nc);
      jsm.catch(() => (this.jsmPromise = undefined));
      this.jsmPromise = jsm;
    }
    return this.jsmPromise;
  }

  async ensure(): Promise<void> {
    for (const bucket of BUCKETS) await this.bucket(bucket);
  }

  localPath(): null {
    return null;
  }

  /**
   * Writes the object as the object store client does (chunks on a fresh subject, then the
   * metadata as a subject rollup, then the old version's chunks purged), with several chunk
   * publishes in flight instead of one: the put is bound by bandwidth, not by round trips.
   */
  async put(bucket: Bucket, name: string, fromPath: string): Promise<StoredFile> {
    const store = await this.bucket(bucket);
    const js = jetstream(this.nc);
    const stream = `OBJ_${bucket}`;
    const id = randomBytes(11).toString('hex');
    const chunkSubject = `$O.${bucket}.C.${id}`;
    const old = await store.info(name);
    const hash = createHash('sha256');
    let size = 0;
    let chunks = 0;
    try {
      const inFlight: Promise<unknown>[] = [];
      for await (const chunk of fixedChunks(createReadStream(fromPath), CHUNK_BYTES)) {
        hash.update(chunk);
        size += chunk.length;
        chunks += 1;
        const ack = js.publish(chunkSubject, chunk, { timeout: PUBLISH_TIMEOUT_MS });
        ack.catch(() => undefined); // Awaited below, in order.
        inFlight.push(ack);
        if (inFlight.length >= PUT_IN_FLIGHT) await inFlight.shift();
      }
      await Promise.all(inFlight);
      const mtime = new Date().toISOString();
      const meta = {
        name,
        options: { max_chunk_size: CHUNK_BYTES },
        bucket,
        nuid: id,
        size,
        chunks,
        mtime,
        digest: `SHA-256=${paddedBase64Url(hash.digest())}`,
        deleted: false,
      };
      const h = headers();
      h.set('Nats-Rollup', 'sub');
      await js.publish(`$O.${bucket}.M.${paddedBase64Url(Buffer.from(name))}`, JSON.stringify(meta), {
        headers: h,
        timeout: PUBLISH_TIMEOUT_MS,
      });
      if (old) {
        const jsm = await this.jsm();
        // The new version is live; a failed cleanup leaves chunks no metadata points to, not a wrong file.
        await jsm.streams.purge(stream, { filter: `$O.${bucket}.C.${old.nuid}` }).catch(() => undefined);
      }
      await rm(fromPath, { force: true });
      return { name, size, mtimeMs: Date.parse(mtime) };
    } catch (err) {
      const jsm = await this.jsm().catch(() => null);
      await jsm?.streams.purge(stream, { filter: chunkSubject }).catch(() => undefined);
      throw err;
    }
  }

  private async info(bucket: Bucket, name: string): Promise<ObjectInfo | null> {
    const info = await (await this.bucket(bucket)).info(name);
    return info && !info.deleted ? info : null;
  }

  async stat(bucket: Bucket, name: string): Promise<StoredFile | null> {
    const info = await this.info(bucket, name);
    return info ? { name, size: info.size, mtimeMs: Date.parse(info.mtime) } : null;
  }

  async read(bucket: Bucket, name: string, range?: ByteRange): Promise<Readable | null> {
    const info = await this.info(bucket, name);
    if (!info) return null;
    const end = Math.min(range?.end ?? info.size - 1, info.size - 1);
    const start = range?.start ?? 0;
    if (info.size === 0 || start > end) return Readable.from([]);
    const jsm = await this.jsm();
    const chunks = new ChunkSource(jsm, `OBJ_${bucket}`, `$O.${bucket}.C.${info.nuid}`, info.chunks);
    const chunkSize = info.options?.max_chunk_size ?? 128 * 1024;
    const first = await chunks.locate(Math.floor(start / chunkSize));
    return Readable.from(
      sliced(chunks.from(first.index), first.index * chunkSize, start, end, range ? null : info),
    );
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
    await this.bucket(bucket);
    const jsm = await this.jsm();
    const subject = `$O.${bucket}.M.>`;
    let chunk: StoredFile[] = [];
    // Every metadata write is a subject rollup, so each object has exactly one message here.
    for (let seq = 1; ;) {
      const msg = await jsm.direct.getMessage(`OBJ_${bucket}`, { seq, next_by_subj: subject });
      if (!msg) break;
      seq = msg.seq + 1;
      const info = msg.json<{ name: string; size: number; mtime: string; deleted?: boolean }>();
      if (info.deleted) continue;
      chunk.push({ name: info.name, size: info.size, mtimeMs: Date.parse(info.mtime) });
      if (chunk.length >= size) {
        yield chunk;
        chunk = [];
      }
    }
    if (chunk.length > 0) yield chunk;
  }

  async *names(bucket: Bucket, size: number): AsyncIterable<string[]> {
    for await (const files of this.list(bucket, size)) yield files.map((f) => f.name);
  }

  /** Cursor: the stream sequence to read on from (every object has one metadata message). */
  async *scan(bucket: Bucket, cursor: string | null, size: number): AsyncIterable<ScanChunk> {
    await this.bucket(bucket);
    const jsm = await this.jsm();
    const subject = `$O.${bucket}.M.>`;
    let seq = cursor === null ? 1 : Math.max(1, Number.parseInt(cursor, 10) || 1);
    for (;;) {
      const files: StoredFile[] = [];
      let entries = 0;
      let ended = false;
      while (entries < size) {
        const msg = await jsm.direct.getMessage(`OBJ_${bucket}`, { seq, next_by_subj: subject });
        if (!msg) {
          ended = true;
          break;
        }
        seq = msg.seq + 1;
        entries += 1;
        const info = msg.json<{ name: string; size: number; mtime: string; deleted?: boolean }>();
        if (!info.deleted) files.push({ name: info.name, size: info.size, mtimeMs: Date.parse(info.mtime) });
      }
      if (entries > 0) yield { files, entries, cursor: String(seq) };
      if (ended) return;
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

/** The chunk messages of one object, fetched by direct get. */
class ChunkSource {
  private firstSeq = 0;
  private contiguous = false;

  constructor(
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
    private readonly subject: string,
    private readonly count: number,
  ) {}

  /** Where reading for chunk `wanted` starts: that chunk when its sequence is known, else the first. */
  async locate(wanted: number): Promise<{ index: number }> {
    const [first, last] = await Promise.all([
      this.get({ seq: 1, next_by_subj: this.subject }),
      this.get({ last_by_subj: this.subject }),
    ]);
    this.firstSeq = first.seq;
    this.contiguous = last.seq - first.seq + 1 === this.count;
    return { index: this.contiguous ? Math.min(wanted, this.count - 1) : 0 };
  }

  /** Chunks from `index` to the last, in order. */
  async *from(index: number): AsyncGenerator<Uint8Array> {
    if (this.contiguous) {
      const ahead: Promise<StoredMsg>[] = [];
      let next = index;
      while (next < this.count || ahead.length > 0) {
        while (next < this.count && ahead.length < READ_AHEAD) {
          const p = this.get({ seq: this.firstSeq + next++ });
          // Awaited in order below; this only keeps an early failure from counting as unhandled.
          p.catch(() => undefined);
          ahead.push(p);
        }
        const msg = await (ahead.shift() as Promise<StoredMsg>);
        if (msg.subject !== this.subject) throw new Error('the object changed while it was read');
        yield msg.data;
      }
      return;
    }
    let seq = this.firstSeq;
    for (let i = 0; i < this.count; i++) {
      const msg = await this.get({ seq, next_by_subj: this.subject });
      seq = msg.seq + 1;
      yield msg.data;
    }
  }

  private async get(
    query: { seq: number; next_by_subj?: string } | { last_by_subj: string },
  ): Promise<StoredMsg> {
    const deadline = Date.now() + MISSING_CHUNK_WAIT_MS;
    for (let wait = 20; ; wait = Math.min(wait * 2, 500)) {
      const msg = await this.jsm.direct.getMessage(this.stream, query);
      if (msg) return msg;
      // Answered by a replica that has not caught up yet, or the object is being deleted.
      if (Date.now() > deadline) {
        throw unavailable('storage.chunk_missing', `a chunk of the stored file is missing (${this.subject})`);
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

/**
 * The bytes `start`..`end` (inclusive) of chunks whose first one begins at `offset`; for a
 * whole-object read (`whole` given) the digest is checked at the end, so a corrupt object
 * ends the stream with an error instead of silently.
 */
async function* sliced(
  chunks: AsyncIterable<Uint8Array>,
  offset: number,
  start: number,
  end: number,
  whole: ObjectInfo | null,
): AsyncGenerator<Buffer> {
  const hash = whole ? createHash('sha256') : null;
  for await (const data of chunks) {
    const chunk = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    hash?.update(chunk);
    const from = Math.max(0, start - offset);
    const to = Math.min(chunk.length, end + 1 - offset);
    offset += chunk.length;
    if (to > from) yield chunk.subarray(from, to);
    if (offset > end) break;
  }
  if (whole && hash) {
    const want = whole.digest.replace(/^SHA-256=/, '').replace(/=+$/, '');
    if (hash.digest('base64url') !== want) throw new Error(`received a corrupt object: ${whole.name}`);
  }
}

/** Copies a stored file to a local path (a tool such as ffmpeg reads it there); false when it is gone. */
export async function copyToFile(
  store: FileStore,
  bucket: Bucket,
  name: string,
  toPath: string,
): Promise<boolean> {
  const source = await store.read(bucket, name);
  if (!source) return false;
  await pipeline(source, createWriteStream(toPath));
  return true;
}

/** Files and bytes of a bucket, streamed. */
export async function bucketUsage(
  store: FileStore,
  bucket: Bucket,
): Promise<{ files: number; bytes: number }> {
  const usage = { files: 0, bytes: 0 };
  for await (const files of store.list(bucket, 1024)) {
    usage.files += files.length;
    for (const f of files) usage.bytes += f.size;
  }
  return usage;
}

/**
 * How a stored file is named in events, outputs and answers: its path for a local file (as
 * before), `<bucket>/<name>` for an object.
 */
export function storedPath(store: FileStore, bucket: Bucket, name: string): string {
  return store.localPath(bucket, name) ?? `${bucket}/${name}`;
}

/** The bucket and name of a `storedPath`, or null when it names neither. */
export function parseStoredPath(store: FileStore, path: string): { bucket: Bucket; name: string } | null {
  for (const bucket of BUCKETS) {
    const local = store.localPath(bucket, '');
    const prefix = local ?? `${bucket}/`;
    if (!path.startsWith(prefix)) continue;
    const name = path.slice(prefix.length);
    if (name.length > 0 && !name.includes('/')) return { bucket, name };
  }
  return null;
}

/** Result files of a job id: `<id>.<ext>`, the extension having no dot. */
export async function findResults(store: FileStore, bucket: Bucket, jobId: string): Promise<StoredFile[]> {
  return (await store.find(bucket, `${jobId}.`)).filter((f) => !f.name.slice(jobId.length + 1).includes('.'));
}

/** A FileStore for callers that still hand over the DATA_DIR folders (`Storage`). */
export function asFileStore(from: FileStore | { readonly root: string }): FileStore {
  return 'kind' in from ? from : new LocalFileStore(from.root);
}

/** Base64url with padding, as the object store writes digests and metadata subjects. */
function paddedBase64Url(bytes: Buffer): string {
  return bytes.toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
}

/** The stream's bytes in chunks of exactly `size` (the last one shorter): a range read relies on it. */
async function* fixedChunks(source: Readable, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let length = 0;
  for await (const data of source) {
    let buf = data as Buffer;
    while (length + buf.length >= size) {
      const take = size - length;
      pending.push(buf.subarray(0, take));
      yield Buffer.concat(pending);
      buf = buf.subarray(take);
      pending = [];
      length = 0;
    }
    if (buf.length > 0) {
      pending.push(buf);
      length += buf.length;
    }
  }
  if (length > 0) yield Buffer.concat(pending);
}
