import { readdir, readFile, rm, mkdtemp } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { NatsFileStore, type Bucket, type Config } from '@media-jobs/libs';
import {
  makeMp4,
  run,
  startFixtureServer,
  startPlatform,
  tempDataDir,
  waitUntil,
  type FixtureServer,
  type Platform,
} from '@media-jobs/libs/testing';
import { startDownloadWorker } from '../../download-worker/src/worker.js';
import { startNormalizeWorker } from '../../normalize-worker/src/worker.js';
import { startJanitor, type Janitor } from '../../janitor/src/janitor.js';
import { startGateway, type Gateway } from '../src/gateway.js';

// STORAGE=nats end to end: every service on its own DATA_DIR (only its tmp/ is used), files
// in the Object Store buckets. A short TTL lets a job expire within the test.

const TTL_HOURS = 0.01; // 36 s

let platform: Platform;
let fixtures: FixtureServer;
let nc: NatsConnection;
let objects: NatsFileStore;
const dirs: { dir: string; remove(): Promise<void> }[] = [];
const stops: (() => Promise<void>)[] = [];
let gateway: Gateway;
let janitor: Janitor;
let mp4Url: string;
let speech: Buffer;
let scratch: string;
const janitorEvents: { type: string; [k: string]: unknown }[] = [];

async function ownConfig(): Promise<Config> {
  const data = await tempDataDir();
  dirs.push(data);
  return platform.config({ STORAGE: 'nats', DATA_DIR: data.dir, CACHE_TTL_HOURS: String(TTL_HOURS) });
}

beforeAll(async () => {
  platform = await startPlatform();
  fixtures = await startFixtureServer();
  const mp4 = await makeMp4({ width: 320, height: 180, seconds: 2 });
  fixtures.mount('mp4', join(mp4, '..'));
  mp4Url = `${fixtures.origin}/mp4/${basename(mp4)}`;
  gateway = await startGateway(await ownConfig());
  stops.push(() => gateway.stop());
  const download = await startDownloadWorker(await ownConfig());
  stops.push(() => download.stop());
  const normalize = await startNormalizeWorker(await ownConfig());
  stops.push(() => normalize.stop());
  janitor = await startJanitor(await ownConfig());
  stops.push(() => janitor.stop());
  nc = await connect({ servers: platform.nats.url });
  nc.subscribe('events.janitor.>', {
    callback: (_e, m) => void janitorEvents.push(m.json()),
  });
  objects = new NatsFileStore(nc);
  scratch = await mkdtemp(join(tmpdir(), 'mj-storage-nats-'));
  const speechPath = join(scratch, 'speech.mp3');
  await run('ffmpeg', [
    ...['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi'],
    ...['-i', 'aevalsrc=exprs=0.05*sin(2*PI*220*t):s=44100:d=2', '-c:a', 'libmp3lame', speechPath],
  ]);
  speech = await readFile(speechPath);
}, 120_000);

afterAll(async () => {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
  await nc?.close();
  await fixtures?.close();
  await platform?.close();
  for (const d of dirs) await d.remove();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

async function json(res: Response): Promise<Record<string, any>> {
  return (await res.json()) as Record<string, any>;
}

async function completed(id: string): Promise<Record<string, any>> {
  return waitUntil(
    `job ${id} to complete`,
    async () => {
      const body = await json(await fetch(`${gateway.url}/jobs/${id}`));
      if (body.status === 'failed') throw new Error(`job ${id} failed: ${JSON.stringify(body.error)}`);
      return body;
    },
    { timeoutMs: 90_000, intervalMs: 200, until: (b) => b.status === 'completed' },
  );
}

async function submitDownload(quality: string): Promise<Record<string, any>> {
  const res = await fetch(`${gateway.url}/download`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url: mp4Url, quality }),
  });
  expect(res.status).toBe(202);
  return completed((await json(res)).id as string);
}

/** The status of a plain GET (no headers added by fetch). */
function statusOf(url: string, headers: Record<string, string>): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    get(url, { headers }, (res) => {
      res.resume();
      resolve(res.statusCode);
    }).on('error', reject);
  });
}

async function names(bucket: Bucket): Promise<string[]> {
  const out: string[] = [];
  for await (const chunk of objects.names(bucket, 100)) out.push(...chunk);
  return out.sort();
}

/** Every service's DATA_DIR holds an empty tmp/ and nothing else. */
async function dataDirsClean(): Promise<boolean> {
  for (const { dir } of dirs) {
    if ((await readdir(dir)).filter((n) => !n.startsWith('.')).join() !== 'tmp') return false;
    if ((await readdir(join(dir, 'tmp'))).length > 0) return false;
  }
  return true;
}

let best: Record<string, any>;
let normalized: Record<string, any>;

describe('STORAGE=nats', () => {
  it('when a download and a normalize upload complete, then their files and the upload are objects, not files', async () => {
    best = await submitDownload('best');
    const form = new FormData();
    form.append('operations[]', 'normalize_volume');
    form.append('format', 'mp3');
    form.append('file', new Blob([new Uint8Array(speech)], { type: 'audio/mpeg' }), 'speech.mp3');
    const res = await fetch(`${gateway.url}/normalize`, { method: 'POST', body: form });
    expect(res.status).toBe(202);
    normalized = await completed((await json(res)).id as string);

    expect(await names('downloads')).toEqual([best.result.file]);
    expect(await names('normalized')).toEqual([normalized.result.file]);
    const [upload] = await names('uploads');
    expect(upload).toMatch(new RegExp(`^${normalized.id.slice(0, 16)}[0-9a-f]{48}\\.mp3$`));
    expect(await objects.stat('downloads', best.result.file)).toMatchObject({ size: best.result.size_bytes });
    await waitUntil('no service to hold anything but an empty tmp/', dataDirsClean);
  }, 180_000);

  it('when the file is asked for whole or by range, then the gateway streams the object with the right bytes and headers', async () => {
    const url = `${gateway.url}/jobs/${best.id}/file`;
    const whole = await fetch(url);
    expect(whole.status).toBe(200);
    expect(whole.headers.get('accept-ranges')).toBe('bytes');
    expect(whole.headers.get('content-type')).toMatch(/video\/mp4/);
    expect(whole.headers.get('content-disposition')).toBe(`attachment; filename="${best.result.file}"`);
    const bytes = Buffer.from(await whole.arrayBuffer());
    expect(bytes.length).toBe(best.result.size_bytes);

    const size = bytes.length;
    for (const [start, end] of [
      [0, 0],
      [100, 131_171],
      [size - 10, size - 1],
    ] as const) {
      const part = await fetch(url, { headers: { range: `bytes=${start}-${end}` } });
      expect(part.status).toBe(206);
      expect(part.headers.get('content-range')).toBe(`bytes ${start}-${end}/${size}`);
      expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(start, end + 1))).toBe(true);
    }
    const suffix = await fetch(url, { headers: { range: 'bytes=-5' } });
    expect(Buffer.from(await suffix.arrayBuffer()).equals(bytes.subarray(size - 5))).toBe(true);

    const outside = await fetch(url, { headers: { range: `bytes=${size + 10}-` } });
    expect(outside.status).toBe(416);
    expect(outside.headers.get('content-range')).toBe(`bytes */${size}`);

    const etag = whole.headers.get('etag') as string;
    // fetch() sends `cache-control: no-cache` with a conditional header, which disables it.
    expect(await statusOf(url, { 'if-none-match': etag })).toBe(304);

    const audio = await fetch(`${gateway.url}/jobs/${normalized.id}/file`);
    expect(audio.status).toBe(200);
    expect(Number(audio.headers.get('content-length'))).toBe(normalized.result.size_bytes);
    await audio.arrayBuffer();
  });

  it('when admin stats are asked for, then files and bytes are those of the buckets', async () => {
    const res = await fetch(`${gateway.url}/admin/stats`);
    const stats = await json(res);
    expect(stats.disk.downloads).toEqual({ files: 1, bytes: best.result.size_bytes });
    expect(stats.disk.normalized).toEqual({ files: 1, bytes: normalized.result.size_bytes });
    expect(stats.disk.uploads).toEqual({ files: 1, bytes: speech.length });
  });

  it('when a job is deleted, then its object goes and the others stay', async () => {
    const worst = await submitDownload('worst');
    expect(await names('downloads')).toContain(worst.result.file);
    const res = await fetch(`${gateway.url}/jobs/${worst.id}`, { method: 'DELETE' });
    expect(await json(res)).toMatchObject({ deleted: true, files: [worst.result.file] });
    expect(await names('downloads')).toEqual([best.result.file]);
    expect((await fetch(`${gateway.url}/jobs/${worst.id}/file`)).status).toBe(404);
  }, 120_000);

  it('when jobs expire and an object has no record, then a sweep removes their objects and the orphan', async () => {
    // An object no record accounts for, put as a worker would.
    const orphanPath = join(scratch, 'orphan.mp4');
    await run('cp', [join(scratch, 'speech.mp3'), orphanPath]);
    await objects.put('downloads', 'lost_best.mp4', orphanPath);
    const expiry = Math.max(Date.parse(best.expires_at), Date.parse(normalized.expires_at));
    // The orphan pass takes objects older than the TTL.
    const orphanOld = Date.now() + TTL_HOURS * 3_600_000;
    await waitUntil(
      'the jobs to expire and the orphan to age',
      () => Date.now() > Math.max(expiry, orphanOld),
      {
        timeoutMs: 120_000,
        intervalMs: 500,
      },
    );
    const sweep = await json(await fetch(`${gateway.url}/admin/cleanup`, { method: 'POST' }));
    expect(sweep).toMatchObject({ removed: { download: 1, normalize: 1, orphan: 1 } });
    for (const bucket of ['downloads', 'uploads', 'normalized'] as const)
      expect(await names(bucket)).toEqual([]);
    const removed = janitorEvents.filter((e) => e.type === 'removed');
    expect(removed).toContainEqual(
      expect.objectContaining({
        job_id: best.id,
        files: [`downloads/${best.result.file}`],
        reason: 'expired',
      }),
    );
    expect(removed).toContainEqual(
      expect.objectContaining({ files: ['downloads/lost_best.mp4'], reason: 'orphan' }),
    );
    expect(await dataDirsClean()).toBe(true);
  }, 180_000);
});
