/**
 * `npm run bench:storage`: what `STORAGE=nats` costs against `STORAGE=local`, side by side in
 * one run, on a real nats-server of its own (loopback, file storage, R1) and a temp folder.
 *
 * For a file of `BENCH_STORAGE_MB` (default 200) MB: the put a worker does when a result is
 * complete (local: a rename out of tmp/; nats: the chunked upload into the bucket), a whole
 * read, and ranged reads as a video player's seeks ask them (the second half, and 1 MiB from
 * the middle), each as MB/s of the bytes asked for, plus the time to the first byte of the
 * mid-file range (local: an open and seek; nats: locating the chunk that holds it).
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { connect } from '@nats-io/transport-node';
import { LocalFileStore, NatsFileStore, type ByteRange, type FileStore } from '@media-jobs/libs';
import { startNats, tempDataDir } from '@media-jobs/libs/testing';

const MB = 1024 * 1024;
const SIZE_MB = Number(process.env.BENCH_STORAGE_MB ?? 200);
const SIZE = SIZE_MB * MB;

async function makeFile(path: string): Promise<void> {
  const out = createWriteStream(path);
  const block = randomBytes(MB);
  for (let i = 0; i < SIZE_MB; i++) {
    if (!out.write(block)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

/** Reads and drops the bytes; returns the seconds taken and the seconds to the first byte. */
async function timedRead(
  store: FileStore,
  name: string,
  range?: ByteRange,
): Promise<{ s: number; ttfb: number; bytes: number }> {
  const t0 = performance.now();
  const stream = await store.read('downloads', name, range);
  if (!stream) throw new Error(`${name} is missing`);
  let bytes = 0;
  let ttfb = 0;
  for await (const chunk of stream) {
    if (bytes === 0) ttfb = (performance.now() - t0) / 1000;
    bytes += (chunk as Buffer).length;
  }
  return { s: (performance.now() - t0) / 1000, ttfb, bytes };
}

const rate = (bytes: number, s: number) => `${(bytes / MB / s).toFixed(0).padStart(6)} MB/s`;

async function measure(store: FileStore, tmp: string): Promise<string[]> {
  const staged = join(tmp, `${store.kind}.bin`);
  await makeFile(staged);
  const name = 'bench_best.mp4';
  const t0 = performance.now();
  await store.put('downloads', name, staged);
  const putS = (performance.now() - t0) / 1000;
  const whole = await timedRead(store, name);
  const half = await timedRead(store, name, { start: SIZE / 2, end: SIZE - 1 });
  const mid = await timedRead(store, name, { start: SIZE / 2 + 12345, end: SIZE / 2 + 12345 + MB - 1 });
  if (whole.bytes !== SIZE || half.bytes !== SIZE / 2 || mid.bytes !== MB) throw new Error('short read');
  await store.remove('downloads', [name]);
  return [
    rate(SIZE, putS),
    rate(whole.bytes, whole.s),
    rate(half.bytes, half.s),
    rate(mid.bytes, mid.s),
    `${(mid.ttfb * 1000).toFixed(1).padStart(7)} ms`,
  ];
}

async function main(): Promise<void> {
  process.stdout.write(`a ${SIZE_MB} MB file; starting nats-server...\n`);
  const [nats, data] = await Promise.all([startNats(), tempDataDir()]);
  const nc = await connect({ servers: nats.url });
  try {
    const tmp = join(data.dir, 'tmp');
    await mkdir(tmp, { recursive: true });
    const stores: FileStore[] = [new LocalFileStore(data.dir), new NatsFileStore(nc)];
    const rows: [string, string[]][] = [];
    for (const store of stores) {
      await store.ensure();
      process.stdout.write(`measuring ${store.kind}...\n`);
      rows.push([store.kind, await measure(store, tmp)]);
    }
    const head = ['STORAGE', 'put', 'read whole', 'range 2nd half', 'range 1 MiB mid', 'mid first byte'];
    const widths = head.map((h, i) =>
      Math.max(h.length, ...rows.map(([k, r]) => (i === 0 ? k : r[i - 1]!).length)),
    );
    const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
    process.stdout.write(`\n${line(head)}\n`);
    for (const [kind, cells] of rows) process.stdout.write(`${line([kind, ...cells])}\n`);
    process.stdout.write(
      '\nlocal put is a rename (same file system); nats put uploads every byte into the bucket.\n',
    );
  } finally {
    await nc.close();
    await nats.close();
    await data.remove();
  }
}

await main();
