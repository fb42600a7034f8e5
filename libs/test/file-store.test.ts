import { randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Objm } from '@nats-io/obj';
import { LocalFileStore, NatsFileStore, type FileStore } from '@media-jobs/libs';
import { startNats, tempDataDir, type TestServer } from '@media-jobs/libs/testing';

// One contract, both implementations: what the services rely on of a file store.

let nats: TestServer;
let nc: NatsConnection;
let data: { dir: string; remove(): Promise<void> };

beforeAll(async () => {
  [nats, data] = await Promise.all([startNats(), tempDataDir()]);
  nc = await connect({ servers: nats.url });
});

afterAll(async () => {
  await nc?.close();
  await Promise.all([nats?.close(), data?.remove()]);
});

async function bytesOf(stream: Readable | null): Promise<Buffer> {
  if (!stream) throw new Error('no stream');
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

const stores: [string, () => FileStore][] = [
  ['local', () => new LocalFileStore(join(data.dir, 'local'))],
  ['nats', () => new NatsFileStore(nc)],
];

describe.each(stores)('%s file store', (kind, make) => {
  let store: FileStore;
  let tmp: string;
  // Larger than the object store's 128 KiB chunks, so ranges cross chunk boundaries.
  const content = randomBytes(300 * 1024 + 17);

  const staged = async (bytes: Buffer): Promise<string> => {
    const path = join(tmp, randomBytes(6).toString('hex'));
    await writeFile(path, bytes);
    return path;
  };

  beforeAll(async () => {
    store = make();
    tmp = join(data.dir, `${kind}-tmp`);
    await mkdir(tmp, { recursive: true });
    await store.ensure();
  });

  it('when a file is put, then it is stated, read whole and found by its id prefix, and the staged copy is gone', async () => {
    const from = await staged(content);
    const put = await store.put('downloads', 'abc_best.mp4', from);
    expect(put).toMatchObject({ name: 'abc_best.mp4', size: content.length });
    expect(await store.stat('downloads', 'abc_best.mp4')).toMatchObject({ size: content.length });
    expect((await bytesOf(await store.read('downloads', 'abc_best.mp4'))).equals(content)).toBe(true);
    expect((await store.find('downloads', 'abc_best.')).map((f) => f.name)).toEqual(['abc_best.mp4']);
    expect(await store.find('downloads', 'abc_worst.')).toEqual([]);
    await expect(import('node:fs/promises').then((fs) => fs.stat(from))).rejects.toThrow();
  });

  it.each([
    [0, 0],
    [0, 99],
    [131_000, 132_000],
    [200_000, 300 * 1024 + 16],
  ])('when bytes %i-%i are read, then exactly those come back', async (start, end) => {
    const got = await bytesOf(await store.read('downloads', 'abc_best.mp4', { start, end }));
    expect(got.equals(content.subarray(start, end + 1))).toBe(true);
  });

  it('when a name is put again, then the new content replaces the old', async () => {
    await store.put('normalized', 'n1_x.wav', await staged(Buffer.from('first')));
    await store.put('normalized', 'n1_x.wav', await staged(Buffer.from('second, longer')));
    expect((await bytesOf(await store.read('normalized', 'n1_x.wav'))).toString()).toBe('second, longer');
    expect(await store.stat('normalized', 'n1_x.wav')).toMatchObject({ size: 14 });
  });

  it('when files are listed, then every one comes once, in chunks of the given size', async () => {
    for (let i = 0; i < 7; i++)
      await store.put('uploads', `${'0'.repeat(63)}${i}.mp3`, await staged(Buffer.from(`u${i}`)));
    const chunks: number[] = [];
    const names: string[] = [];
    for await (const files of store.list('uploads', 3)) {
      chunks.push(files.length);
      names.push(...files.map((f) => f.name));
    }
    expect(names.sort()).toEqual(Array.from({ length: 7 }, (_, i) => `${'0'.repeat(63)}${i}.mp3`));
    expect(Math.max(...chunks)).toBeLessThanOrEqual(3);
  });

  it('when a scan stops at a cursor, then this store and a fresh one resume after it and every file comes once', async () => {
    const all = Array.from({ length: 7 }, (_, i) => `${'0'.repeat(63)}${i}.mp3`);
    const seen: string[] = [];
    let cursor: string | null = null;
    // Two chunks here, the next two from this store's open scan, the rest from a fresh instance.
    for (const [from, chunks] of [
      [store, 2],
      [store, 2],
      [make(), Number.POSITIVE_INFINITY],
    ] as const) {
      let taken = 0;
      for await (const chunk of from.scan('uploads', cursor, 2)) {
        seen.push(...chunk.files.map((f) => f.name));
        expect(chunk.files.length).toBeLessThanOrEqual(2);
        cursor = chunk.cursor;
        if (++taken >= chunks) break;
      }
    }
    expect(seen.sort()).toEqual(all);
  });

  it('when a scan is left half-way and the store is closed, then no folder stays open and the scan still resumes from its cursor', async () => {
    const openFds = async () => (await readdir('/proc/self/fd')).length;
    const before = await openFds();
    let cursor: string | null = null;
    for await (const chunk of store.scan('uploads', null, 2)) {
      cursor = chunk.cursor;
      break;
    }
    await store.close();
    expect(await openFds()).toBe(before);
    const rest: string[] = [];
    for await (const chunk of store.scan('uploads', cursor, 100))
      rest.push(...chunk.files.map((f) => f.name));
    expect(rest).toHaveLength(5);
    await store.close();
  });

  it('when files are removed, then they are gone, their bytes are counted, and a missing one is ignored', async () => {
    const removed = await store.remove('downloads', ['abc_best.mp4', 'nothing_here.mp4']);
    expect(removed.removed.map((f) => f.name)).toEqual(['abc_best.mp4']);
    expect(removed.bytes).toBe(content.length);
    expect(await store.stat('downloads', 'abc_best.mp4')).toBeNull();
    expect(await store.read('downloads', 'abc_best.mp4')).toBeNull();
    expect(await store.find('downloads', 'abc_best.')).toEqual([]);
  });

  it('when two files are put at the same time, then ranges of each still read back exactly', async () => {
    // Concurrent puts interleave their chunks in the bucket's stream: a range read cannot
    // jump to its chunk by sequence there and walks from the first one instead.
    const other = randomBytes(400 * 1024);
    await Promise.all([
      store.put('downloads', 'p1_best.mp4', await staged(content)),
      store.put('downloads', 'p2_best.mp4', await staged(other)),
    ]);
    for (const [name, bytes] of [
      ['p1_best.mp4', content],
      ['p2_best.mp4', other],
    ] as const) {
      expect((await bytesOf(await store.read('downloads', name))).equals(bytes)).toBe(true);
      const got = await bytesOf(await store.read('downloads', name, { start: 270_000, end: 300_000 }));
      expect(got.equals(bytes.subarray(270_000, 300_001))).toBe(true);
    }
    await store.remove('downloads', ['p1_best.mp4', 'p2_best.mp4']);
  });

  it('when an empty file is put, then it reads back empty and is listed by name', async () => {
    await store.put('normalized', 'empty_x.wav', await staged(Buffer.alloc(0)));
    expect(await store.stat('normalized', 'empty_x.wav')).toMatchObject({ size: 0 });
    expect((await bytesOf(await store.read('normalized', 'empty_x.wav'))).length).toBe(0);
    const names: string[] = [];
    for await (const chunk of store.names('normalized', 10)) names.push(...chunk);
    expect(names).toContain('empty_x.wav');
    expect(store.localPath('normalized', 'empty_x.wav') === null).toBe(kind === 'nats');
  });

  it.runIf(kind === 'nats')(
    'when a file is put, then the object store client reads it too (same format)',
    async () => {
      await store.put('uploads', 'fmt.bin', await staged(content));
      const os = await new Objm(nc).open('uploads');
      const got = await os.get('fmt.bin');
      const chunks: Buffer[] = [];
      for await (const c of got!.data) chunks.push(Buffer.from(c));
      expect(await got!.error).toBeFalsy();
      expect(Buffer.concat(chunks).equals(content)).toBe(true);
      await store.remove('uploads', ['fmt.bin']);
    },
  );

  it('when a file was never stored, then stat and read answer null', async () => {
    expect(await store.stat('normalized', 'never.wav')).toBeNull();
    expect(await store.read('normalized', 'never.wav')).toBeNull();
  });
});
