import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { ffprobe, run, startPlatform, waitUntil, type Platform } from '@media-jobs/libs/testing';
import { startGateway, type Gateway } from '../src/gateway.js';
import { startNormalizeWorker, type NormalizeWorker } from '../../normalize-worker/src/worker.js';

let platform: Platform;
let gateway: Gateway;
let worker: NormalizeWorker;
let redis: Redis;
let scratch: string;
let stereo44k: Buffer;

beforeAll(async () => {
  platform = await startPlatform();
  gateway = await startGateway(platform.config());
  worker = await startNormalizeWorker(platform.config());
  redis = new Redis(platform.redis.url);
  scratch = await mkdtemp(join(tmpdir(), 'mj-norm-result-'));
  const path = join(scratch, 'input.wav');
  // Stereo at 44.1 kHz: neither the channels nor the rate of any output by accident.
  await run('ffmpeg', [
    ...['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i'],
    'aevalsrc=exprs=0.1*sin(2*PI*440*t)|0.1*sin(2*PI*660*t):s=44100:d=1.5',
    path,
  ]);
  stereo44k = await readFile(path);
}, 60_000);

afterAll(async () => {
  await worker?.stop();
  await gateway?.stop();
  redis?.disconnect();
  await platform?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

async function postNormalize(fields: [string, string][]) {
  const form = new FormData();
  for (const [k, v] of fields) form.append(k, v);
  form.append('file', new Blob([new Uint8Array(stereo44k)], { type: 'audio/wav' }), 'input.wav');
  const res = await fetch(`${gateway.url}/normalize`, { method: 'POST', body: form });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

async function completed(id: string): Promise<Record<string, any>> {
  return waitUntil(
    `job ${id} to end`,
    async () => (await (await fetch(`${gateway.url}/jobs/${id}`)).json()) as Record<string, any>,
    {
      timeoutMs: 60_000,
      intervalMs: 100,
      until: (job) => job.status === 'completed' || job.status === 'failed',
    },
  );
}

/** The container and codec ffprobe reads, as the API's format names. */
const FORMAT_OF: Record<string, [container: string, codec: RegExp]> = {
  opus: ['ogg', /^opus$/],
  mp3: ['mp3', /^mp3$/],
  m4a: ['mov,mp4,m4a,3gp,3g2,mj2', /^aac$/],
  wav: ['wav', /^pcm_/],
  flac: ['flac', /^flac$/],
};

/** Fetches the result file and checks every field of `result` that describes it against ffprobe. */
async function expectResultIsTheFile(job: Record<string, any>): Promise<Record<string, any>> {
  const res = await fetch(`${gateway.url}/jobs/${job.id}/file`);
  expect(res.status).toBe(200);
  const bytes = Buffer.from(await res.arrayBuffer());
  const local = join(scratch, String(job.result.file));
  await writeFile(local, bytes);
  const probe = await ffprobe(local);
  const audio = probe.streams.find((s) => s.codec_type === 'audio');
  const [container, codec] = FORMAT_OF[job.result.format as string] ?? ['?', /^$/];
  expect(probe.format.format_name).toBe(container);
  expect(audio?.codec_name).toMatch(codec);
  expect(job.result).toMatchObject({
    codec: audio?.codec_name,
    sample_rate: Number(audio?.sample_rate),
    channels: audio?.channels,
    size_bytes: bytes.length,
  });
  expect(Number(probe.format.size)).toBe(bytes.length);
  expect(job.result.duration_s).toBeCloseTo(Number(probe.format.duration), 3);
  expect(job.result.file).toBe(`${job.id}.${job.result.format}`);
  return { probe, audio };
}

describe('normalize results measured from the output file', () => {
  it('when sample_rate_16k is asked without a format, then the output is flac at 16 kHz and the result is what ffprobe reads', async () => {
    const posted = await postNormalize([['operations[]', 'sample_rate_16k']]);
    expect(posted.status).toBe(202);
    expect(posted.body.id).toMatch(/_sample_rate_16k-flac$/);
    expect(posted.body.request.format).toBe('flac');
    const job = await completed(posted.body.id);
    expect(job.status).toBe('completed');
    expect(job.result).toMatchObject({ format: 'flac', sample_rate: 16000, channels: 2 });
    const { audio } = await expectResultIsTheFile(job);
    expect(audio?.sample_rate).toBe('16000');
  });

  it.each([
    ['opus', ['normalize_volume'], 48000, 2],
    ['mp3', ['convert_to_mono'], 44100, 1],
    ['m4a', ['highpass_filter'], 44100, 2],
    ['wav', ['sample_rate_16k', 'convert_to_mono'], 16000, 1],
    ['flac', ['remove_noise'], 44100, 2],
  ] as const)(
    'when format %s is asked with %j, then every result field that describes the file is what ffprobe reads',
    async (format, operations, rate, channels) => {
      const posted = await postNormalize([
        ...operations.map((op) => ['operations[]', op] as [string, string]),
        ['format', format],
      ]);
      expect(posted.status).toBe(202);
      const job = await completed(posted.body.id);
      expect(job.status).toBe('completed');
      expect(job.result).toMatchObject({ format, sample_rate: rate, channels });
      await expectResultIsTheFile(job);
    },
  );

  it('when format opus is asked with sample_rate_16k, then it is a 400 that says why, and no job', async () => {
    const before = (await redis.keys('audio_job:*')).sort();
    const res = await postNormalize([
      ['operations[]', 'sample_rate_16k'],
      ['format', 'opus'],
    ]);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('normalize.format_conflict');
    expect(res.body.error.message).toMatch(/48 kHz/);
    expect((await redis.keys('audio_job:*')).sort()).toEqual(before);
  });
});
