import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { jobEventSchema, normalizeResultSchema, uploadRefsKey, type JobEvent } from '@media-jobs/libs';
import { ffprobe, run, startPlatform, waitUntil, type Platform } from '@media-jobs/libs/testing';
import { startGateway, type Gateway } from '../src/gateway.js';
import { startNormalizeWorker, type NormalizeWorker } from '../../normalize-worker/src/worker.js';
import { fetchDocCheck, type DocCheck } from './openapi-check.js';

let platform: Platform;
let gateway: Gateway;
let smallGateway: Gateway;
let worker: NormalizeWorker;
let redis: Redis;
let nc: NatsConnection;
let fixtures: string;
let check: DocCheck;
let speech: Buffer;
const events: { subject: string; event: JobEvent }[] = [];

beforeAll(async () => {
  platform = await startPlatform();
  gateway = await startGateway(platform.config());
  smallGateway = await startGateway(platform.config({ MAX_UPLOAD_MB: '0.05' }));
  worker = await startNormalizeWorker(platform.config());
  redis = new Redis(platform.redis.url);
  nc = await connect({ servers: platform.nats.url });
  nc.subscribe('events.job.normalize.>', {
    callback: (_err, msg) =>
      void events.push({ subject: msg.subject, event: jobEventSchema.parse(msg.json()) }),
  });
  check = await fetchDocCheck(gateway.url);
  fixtures = await mkdtemp(join(tmpdir(), 'mj-norm-api-'));
  const path = join(fixtures, 'speech.mp3');
  await run('ffmpeg', [
    '-hide_banner',
    '-loglevel',
    'error',
    '-y',
    '-f',
    'lavfi',
    '-i',
    'aevalsrc=exprs=0.05*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*4*t)):s=44100:d=3',
    '-ac',
    '2',
    '-c:a',
    'libmp3lame',
    path,
  ]);
  speech = await readFile(path);
});

afterAll(async () => {
  await worker?.stop();
  await gateway?.stop();
  await smallGateway?.stop();
  redis?.disconnect();
  await nc?.close();
  await platform?.close();
  if (fixtures) await rm(fixtures, { recursive: true, force: true });
});

type Fields = [string, string][];

async function postNormalize(
  fields: Fields,
  file: Buffer | null = speech,
  name = 'speech.mp3',
  base = gateway.url,
  type = 'audio/mpeg',
) {
  const form = new FormData();
  for (const [k, v] of fields) form.append(k, v);
  if (file) form.append('file', new Blob([new Uint8Array(file)], { type }), name);
  const res = await fetch(`${base}/normalize`, { method: 'POST', body: form });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

async function waitForStatus(
  id: string,
  status: string,
  timeoutMs = 30_000,
  base = gateway.url,
): Promise<Record<string, any>> {
  return waitUntil(
    `job ${id} to be ${status}`,
    async () => {
      const body = (await (await fetch(`${base}/jobs/${id}`)).json()) as Record<string, any>;
      // Ended otherwise: it never will be, so fail now with what it says.
      if (body.status !== status && (body.status === 'completed' || body.status === 'failed'))
        throw new Error(`job ${id} ended ${body.status}: ${JSON.stringify(body)}`);
      return body;
    },
    { timeoutMs, intervalMs: 100, until: (body) => body.status === status },
  );
}

const tmpFiles = () => readdir(join(platform.dataDir, 'tmp'));
const uploads = () => readdir(join(platform.dataDir, 'uploads'));

describe('POST /normalize', () => {
  it('when a file is posted, then it is a 202 and the job completes with a normalized file to fetch', async () => {
    const res = await postNormalize(
      [['operations[]', 'normalize_volume']],
      speech,
      '../../etc/evil name.mp3',
    );
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ kind: 'normalize', status: 'queued', cache_hit: false });
    expect(res.body.id).toMatch(/^[0-9a-f]{16}_normalize_volume-opus$/);
    expect(res.body.request).toMatchObject({
      upload: { ext: 'mp3', size: speech.length, original_name: 'evil name.mp3' },
      operations: ['normalize_volume'],
      format: 'opus',
      target_lufs: -16,
    });
    const done = await waitForStatus(res.body.id, 'completed');
    expect(done.result).toMatchObject({
      file: `${res.body.id}.opus`,
      format: 'opus',
      channels: 2,
      sample_rate: 48000,
    });
    expect(Math.abs(done.result.loudness.output.integrated_lufs + 16)).toBeLessThanOrEqual(1);
    // The result is what the document promises, with no field left out of it.
    expect(normalizeResultSchema.parse(done.result)).toEqual(done.result);
    check.response('/jobs/{id}', 'get', 200, done);
    const file = await fetch(`${gateway.url}/jobs/${res.body.id}/file`);
    expect(file.status).toBe(200);
    const out = join(fixtures, 'fetched.opus');
    await writeFile(out, Buffer.from(await file.arrayBuffer()));
    expect((await ffprobe(out)).streams[0]?.codec_name).toBe('opus');
    expect(await uploads()).toEqual([`${res.body.request.upload.sha256}.mp3`]);
    const types = events.filter((e) => e.event.job_id === res.body.id).map((e) => e.event.type);
    expect(types).toEqual(expect.arrayContaining(['queued', 'started', 'completed']));
  });

  it('when the same file and operations come again, then it is a 200 cache hit and one stored copy serves both jobs', async () => {
    const first = await postNormalize([
      ['operations[]', 'remove_noise'],
      ['format', 'wav'],
    ]);
    const again = await postNormalize(
      [
        ['operations[]', 'remove_noise'],
        ['format', 'wav'],
      ],
      speech,
      'other.mp3',
    );
    expect(first.status).toBe(202);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ id: first.body.id, cache_hit: true });
    const sha = first.body.request.upload.sha256 as string;
    expect((await uploads()).filter((n) => n.startsWith(sha))).toHaveLength(1);
    expect(await redis.smembers(uploadRefsKey(sha.slice(0, 16)))).toContain(`audio_job:${first.body.id}`);
    await waitUntil(`the cache_hit event of ${first.body.id}`, () =>
      events.some((e) => e.event.job_id === first.body.id && e.event.type === 'cache_hit'),
    );
    await waitForStatus(first.body.id, 'completed');
  });

  it('when the operations come in another order or as boolean fields, then the job id is the same', async () => {
    const a = await postNormalize([
      ['operations[]', 'convert_to_mono'],
      ['operations[]', 'highpass_filter'],
      ['format', 'flac'],
    ]);
    const b = await postNormalize([
      ['operations[]', 'highpass_filter'],
      ['operations[]', 'convert_to_mono'],
      ['format', 'flac'],
    ]);
    const c = await postNormalize([
      ['highpass_filter', 'true'],
      ['convert_to_mono', 'true'],
      ['remove_noise', 'false'],
      ['format', 'flac'],
    ]);
    expect(a.body.id).toMatch(/_convert_to_mono-highpass_filter-flac$/);
    expect([b.body.id, c.body.id]).toEqual([a.body.id, a.body.id]);
    expect([a.status, b.status, c.status]).toEqual([202, 200, 200]);
    await waitForStatus(a.body.id, 'completed');
  });

  it('when the format or the loudness target differs, then the job id differs', async () => {
    const mp3 = await postNormalize([
      ['operations[]', 'normalize_volume'],
      ['format', 'mp3'],
    ]);
    const louder = await postNormalize([
      ['operations[]', 'normalize_volume'],
      ['format', 'mp3'],
      ['target_lufs', '-14'],
    ]);
    expect(mp3.body.id).toMatch(/_normalize_volume-mp3$/);
    expect(louder.body.id).toMatch(/_normalize_volume-mp3-lufs_m14$/);
    expect(louder.body.request.target_lufs).toBe(-14);
    const done = await waitForStatus(louder.body.id, 'completed');
    expect(Math.abs(done.result.loudness.output.integrated_lufs + 14)).toBeLessThanOrEqual(1);
  });

  it('when the same bytes come again under another declared type, then the one stored copy serves the new job', async () => {
    // AC3 has no signature the sniffer knows, so the declared type picks the extension.
    const path = join(fixtures, 'tone.ac3');
    await run('ffmpeg', [
      ...['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi'],
      ...['-i', 'sine=frequency=500:sample_rate=48000:duration=2', '-ac', '2', '-c:a', 'ac3', path],
    ]);
    const ac3 = await readFile(path);
    const first = await postNormalize([['operations[]', 'normalize_volume']], ac3, 'a.ac3');
    expect(first.body.request.upload.ext).toBe('mp3');
    await waitForStatus(first.body.id, 'completed');
    const second = await postNormalize(
      [['operations[]', 'convert_to_mono']],
      ac3,
      'a.ac3',
      gateway.url,
      'application/octet-stream',
    );
    expect(second.status).toBe(202);
    expect(second.body.request.upload.ext).toBe('bin');
    const done = await waitForStatus(second.body.id, 'completed');
    expect(done.result).toMatchObject({ channels: 1 });
    const sha = String(first.body.request.upload.sha256);
    expect((await uploads()).filter((n) => n.startsWith(sha))).toEqual([`${sha}.mp3`]);
  });

  it('when the file is not media, then the job is accepted and ends failed with the reason', async () => {
    const res = await postNormalize(
      [['operations[]', 'normalize_volume']],
      Buffer.from('just some text, no audio\n'.repeat(40)),
      'notes.txt',
    );
    expect(res.status).toBe(202);
    expect(res.body.request.upload.ext).toBe('mp3'); // the declared type, as the bytes say nothing
    const failed = await waitForStatus(res.body.id, 'failed');
    expect(failed.error).toMatchObject({ code: 'normalize.invalid_media' });
    check.response('/jobs/{id}', 'get', 200, failed);
  });
});

describe('POST /normalize input checks', () => {
  it.each([
    ['no operations', [['format', 'opus']], speech, 'normalize.no_operations'],
    ['an unknown operation', [['operations[]', 'make_it_pop']], speech, 'normalize.unknown_operation'],
    [
      'an unknown format',
      [
        ['operations[]', 'normalize_volume'],
        ['format', 'exe'],
      ],
      speech,
      'normalize.unknown_format',
    ],
    [
      'a target outside -70..-5',
      [
        ['operations[]', 'normalize_volume'],
        ['target_lufs', '3'],
      ],
      speech,
      'normalize.invalid_target',
    ],
    ['a flag that is not a boolean', [['remove_noise', 'maybe']], speech, 'normalize.invalid_flag'],
    ['an empty file', [['operations[]', 'normalize_volume']], Buffer.alloc(0), 'normalize.empty_file'],
    ['no file', [['operations[]', 'normalize_volume']], null, 'normalize.missing_file'],
  ] as [string, Fields, Buffer | null, string][])(
    'when the request has %s, then it is a 400 and nothing is kept',
    async (_n, fields, file, code) => {
      const before = await uploads();
      const res = await postNormalize(fields, file);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe(code);
      if (code.includes('operation')) {
        expect(res.body.error.message).toContain(
          'normalize_volume, remove_noise, convert_to_mono, highpass_filter, sample_rate_16k',
        );
        expect(res.body.error.details.valid_operations).toHaveLength(5);
      }
      if (code === 'normalize.unknown_format')
        expect(res.body.error.details.valid_formats).toEqual(['opus', 'mp3', 'm4a', 'wav', 'flac']);
      expect(await tmpFiles()).toEqual([]);
      expect(await uploads()).toEqual(before);
    },
  );

  it('when the file is over MAX_UPLOAD_MB, then it is a 413 and no partial file is left', async () => {
    const big = Buffer.concat([speech, Buffer.alloc(2_000_000, 7)]);
    const before = await uploads();
    const res = await postNormalize([['operations[]', 'normalize_volume']], big, 'big.mp3', smallGateway.url);
    expect(res.status).toBe(413);
    expect(res.body.error).toMatchObject({ code: 'upload.too_large' });
    expect(res.body.error.message).toContain('MAX_UPLOAD_MB');
    expect(await tmpFiles()).toEqual([]);
    expect(await uploads()).toEqual(before);
  });

  it('when the body is JSON, not multipart, then it is a 400 that says how to send the file', async () => {
    const res = await fetch(`${gateway.url}/normalize`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Record<string, any>).error.message).toContain('multipart/form-data');
  });
});

describe('POST /normalize after a failed job', () => {
  // A platform of its own, whose worker starts only when the test says: the first run must
  // not begin before the stored upload is gone.
  let own: Platform;
  let ownGateway: Gateway;
  let ownWorker: NormalizeWorker | undefined;

  beforeAll(async () => {
    own = await startPlatform();
    ownGateway = await startGateway(own.config());
  });

  afterAll(async () => {
    await ownWorker?.stop();
    await ownGateway?.stop();
    await own?.close();
  });

  it('when the same file and operations come again after the job failed, then it is a 202 with the same id and the job completes', async () => {
    const fields: Fields = [
      ['operations[]', 'normalize_volume'],
      ['operations[]', 'convert_to_mono'],
    ];
    const first = await postNormalize(fields, speech, 'speech.mp3', ownGateway.url);
    expect(first.status).toBe(202);
    const id = String(first.body.id);
    // The stored upload disappears (a disk cleanup, a lost volume) before a worker runs the job.
    const stored = join(own.dataDir, 'uploads', `${first.body.request.upload.sha256}.mp3`);
    await rm(stored);
    ownWorker = await startNormalizeWorker(own.config());
    const failed = await waitForStatus(id, 'failed', 30_000, ownGateway.url);
    expect(failed.error).toMatchObject({ code: 'normalize.upload_missing' });

    const again = await postNormalize(fields, speech, 'speech.mp3', ownGateway.url);
    expect(again.status).toBe(202);
    expect(again.body).toMatchObject({ id, status: 'queued', cache_hit: false, attempts: 0 });
    expect(again.body.error).toBeUndefined();
    expect(Date.parse(again.body.created_at)).toBeGreaterThan(Date.parse(failed.created_at));
    const done = await waitForStatus(id, 'completed', 30_000, ownGateway.url);
    expect(done.result).toMatchObject({ file: `${id}.opus`, channels: 1 });
    expect(done.attempts).toBe(1);
    expect(await readdir(join(own.dataDir, 'uploads'))).toEqual([`${first.body.request.upload.sha256}.mp3`]);
  });
});

describe('POST /normalize with the queue down', () => {
  it('when NATS is not reachable, then it is a 503 and no record is left behind', async () => {
    await platform.nats.stop();
    try {
      const res = await postNormalize([['operations[]', 'sample_rate_16k']]);
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe('queue.unavailable');
      const keys = await redis.keys('audio_job:*_sample_rate_16k-flac');
      expect(keys).toEqual([]);
    } finally {
      await platform.nats.start();
    }
  });
});
