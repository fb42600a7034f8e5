import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { normalizeResultSchema } from '@media-jobs/libs';
import { ffprobe, makeMp4, run, startPlatform, type Platform } from '@media-jobs/libs/testing';
import { startNormalizeWorker, type NormalizeWorker } from '../src/worker.js';
import {
  interSamplePeaks,
  loudNoise,
  loudnessOf,
  makeVideo,
  meanVolume,
  quietWithPeaks,
  submitter,
  tone,
  toneWithNoise,
  type Submitter,
} from './helpers.js';

let platform: Platform;
let worker: NormalizeWorker;
let redis: Redis;
let nc: NatsConnection;
let jobs: Submitter;
let fixtures: string;

const TARGET = -16;
const CEILING = -1.5;

beforeAll(async () => {
  platform = await startPlatform();
  worker = await startNormalizeWorker(platform.config({ NORMALIZE_CONCURRENCY: '2' }));
  redis = new Redis(platform.redis.url);
  nc = await connect({ servers: platform.nats.url });
  jobs = submitter(nc, redis, platform.dataDir, TARGET);
  fixtures = await mkdtemp(join(tmpdir(), 'mj-norm-fx-'));
});

afterAll(async () => {
  await worker?.stop();
  redis?.disconnect();
  await nc?.close();
  await platform?.close();
  if (fixtures) await rm(fixtures, { recursive: true, force: true });
});

const outputPath = (file: unknown) => join(platform.dataDir, 'normalized', String(file));

async function runJob(
  file: string,
  ops: Parameters<Submitter['submit']>[1],
  format?: Parameters<Submitter['submit']>[2],
) {
  const record = await jobs.submit(file, ops, format);
  const done = await jobs.waitFor(record.id, 'completed');
  // Every result is what the gateway documents, with no field left out of the schema.
  expect(normalizeResultSchema.parse(done.result)).toEqual(done.result);
  const result = done.result as Record<string, any>;
  return { record: done, result, path: outputPath(result.file) };
}

describe('normalize_volume', () => {
  it.each([
    ['a quiet input with sharp peaks', quietWithPeaks, true],
    ['a loud input', loudNoise, false],
  ])(
    'when %s is normalized, then the output is within 1 LU of the target under the true-peak ceiling',
    async (name, make, limited) => {
      const input = await make(join(fixtures, `${name.replace(/\W+/g, '-')}.wav`));
      const before = await loudnessOf(input);
      const { result, path } = await runJob(input, ['normalize_volume']);
      const after = await loudnessOf(path);
      expect(Math.abs(before.integrated - TARGET)).toBeGreaterThan(5);
      expect(Math.abs(after.integrated - TARGET)).toBeLessThanOrEqual(1);
      expect(after.truePeak).not.toBeNull();
      expect(after.truePeak as number).toBeLessThanOrEqual(CEILING + 0.2);
      expect(result.loudness.input.integrated_lufs).toBeCloseTo(before.integrated, 0);
      expect(Math.abs(result.loudness.output.integrated_lufs - TARGET)).toBeLessThanOrEqual(1);
      expect(result.loudness.output.true_peak_dbtp).toBeLessThanOrEqual(CEILING + 0.2);
      expect(result.loudness.limiter).toBe(limited);
      expect(result).toMatchObject({ format: 'opus', codec: 'opus', sample_rate: 48000, channels: 2 });
    },
  );
});

describe('normalize_volume verification', () => {
  it('when inter-sample peaks pass the sample-peak limiter, then the output check lowers its level until the true peak is under the ceiling', async () => {
    const input = await interSamplePeaks(join(fixtures, 'inter-sample.wav'));
    // 3 dB of inter-sample peak: a limit 1 dB under the ceiling is not enough on the first run.
    const record = await submitter(nc, redis, platform.dataDir, -19).submit(
      input,
      ['normalize_volume'],
      'wav',
    );
    const done = await jobs.waitFor(record.id, 'completed');
    expect(normalizeResultSchema.parse(done.result)).toEqual(done.result);
    const result = done.result as Record<string, any>;
    expect(result.loudness.limiter).toBe(true);
    expect(result.loudness.corrections).toBeGreaterThanOrEqual(1);
    const after = await loudnessOf(outputPath(result.file));
    expect(Math.abs(after.integrated + 19)).toBeLessThanOrEqual(1);
    expect(after.truePeak as number).toBeLessThanOrEqual(CEILING + 0.2);
  });
});

describe('filters', () => {
  it('when remove_noise runs on a tone with noise, then the noise floor drops by at least 6 dB and the tone stays within 1 dB', async () => {
    const input = await toneWithNoise(join(fixtures, 'tone-noise.wav'));
    const { path } = await runJob(input, ['remove_noise'], 'wav');
    const noise = 'highpass=f=3000:poles=2,highpass=f=3000:poles=2';
    const toneBand = 'bandpass=f=1000:width_type=q:w=20';
    expect((await meanVolume(input, noise)) - (await meanVolume(path, noise))).toBeGreaterThanOrEqual(6);
    expect(
      Math.abs((await meanVolume(input, toneBand)) - (await meanVolume(path, toneBand))),
    ).toBeLessThanOrEqual(1);
  });

  it('when highpass_filter runs, then a 30 Hz tone drops by at least 20 dB and a 1 kHz tone stays within 1 dB', async () => {
    const low = await tone(join(fixtures, 'tone-30.wav'), 30);
    const mid = await tone(join(fixtures, 'tone-1000.wav'), 1000);
    const lowOut = await runJob(low, ['highpass_filter'], 'wav');
    const midOut = await runJob(mid, ['highpass_filter'], 'wav');
    expect((await meanVolume(low)) - (await meanVolume(lowOut.path))).toBeGreaterThanOrEqual(20);
    expect(Math.abs((await meanVolume(mid)) - (await meanVolume(midOut.path)))).toBeLessThanOrEqual(1);
  });

  it('when convert_to_mono and sample_rate_16k run, then the output has one channel at 16 kHz', async () => {
    const input = await tone(join(fixtures, 'tone-440.wav'), 440);
    const { path, result } = await runJob(input, ['sample_rate_16k', 'convert_to_mono'], 'flac');
    const probe = await ffprobe(path);
    expect(probe.streams).toHaveLength(1);
    expect(probe.streams[0]).toMatchObject({ codec_name: 'flac', channels: 1, sample_rate: '16000' });
    expect(result).toMatchObject({ channels: 1, sample_rate: 16000, format: 'flac' });
  });
});

describe('formats and inputs', () => {
  it.each([
    ['mp3', 'mp3', '44100'],
    ['m4a', 'aac', '44100'],
    ['wav', 'pcm_s16le', '44100'],
    ['opus', 'opus', '48000'],
  ] as const)(
    'when the format is %s, then the file has codec %s and keeps a sample rate the format allows',
    async (format, codec, rate) => {
      const input = await tone(join(fixtures, `tone-44k-${format}.wav`), 440, 2, 44100);
      const { path } = await runJob(input, ['convert_to_mono'], format);
      const probe = await ffprobe(path);
      expect(probe.streams[0]).toMatchObject({ codec_name: codec, sample_rate: rate, channels: 1 });
    },
  );

  it('when the input is a 192 kHz file and the format is mp3, then the output is 48 kHz, not 192 kHz', async () => {
    const input = await tone(join(fixtures, 'tone-192k.wav'), 440, 2, 192000);
    const { path } = await runJob(input, ['highpass_filter'], 'mp3');
    expect((await ffprobe(path)).streams[0]?.sample_rate).toBe('48000');
  });

  it('when the input is a video, then the output is its audio alone', async () => {
    const video = await makeMp4({ width: 320, height: 240, seconds: 3 });
    const { path, result } = await runJob(video, ['normalize_volume']);
    const probe = await ffprobe(path);
    expect(probe.streams.map((s) => s.codec_type)).toEqual(['audio']);
    expect(result.input.had_video).toBe(true);
    expect(Math.abs((await loudnessOf(path)).integrated - TARGET)).toBeLessThanOrEqual(1);
  });

  it.each([
    ['mkv', 'h264', 'opus', /matroska/],
    ['webm', 'vp8', 'vorbis', /webm/],
    ['mov', 'h264', 'aac', /mov/],
  ] as const)(
    'when the input is a %s video (%s with %s audio), then the job completes with its audio alone',
    async (container, videoCodec, audioCodec, formatName) => {
      const video = await makeVideo(join(fixtures, `video.${container}`), container);
      const input = await ffprobe(video);
      expect(input.streams.map((s) => [s.codec_type, s.codec_name])).toEqual([
        ['video', videoCodec],
        ['audio', audioCodec],
      ]);
      const { path, result } = await runJob(video, ['normalize_volume']);
      const probe = await ffprobe(path);
      expect(probe.streams.map((s) => s.codec_type)).toEqual(['audio']);
      expect(probe.streams[0]).toMatchObject({ codec_name: 'opus', channels: 2 });
      expect(Number(probe.format.duration)).toBeCloseTo(3, 0);
      expect(result.input).toMatchObject({ had_video: true, codec: audioCodec });
      expect(result.input.container).toMatch(formatName);
      expect(Math.abs((await loudnessOf(path)).integrated - TARGET)).toBeLessThanOrEqual(1);
    },
  );
});

describe('bad input', () => {
  it('when the upload is not media, then the job fails at once with ffprobe verdict and no retry', async () => {
    const text = join(fixtures, 'notes.bin');
    await writeFile(text, 'these are not the droids you are looking for\n'.repeat(50));
    const record = await jobs.submit(text, ['normalize_volume']);
    const failed = await jobs.waitFor(record.id, 'failed');
    expect(failed.error?.code).toBe('normalize.invalid_media');
    expect(failed.error?.message).toMatch(/Invalid data found/);
    expect(failed.attempts).toBe(1);
  });

  it('when the upload is a video cut short before its index, then the job fails with the reason', async () => {
    const video = await makeMp4({ width: 320, height: 240, seconds: 4 });
    const whole = join(fixtures, 'index-at-end.mp4');
    // Without faststart the index (moov) is written last, so a cut file has none.
    await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-i', video, '-c', 'copy', whole]);
    const bytes = await readFile(whole);
    const broken = join(fixtures, 'broken.mp4');
    await writeFile(broken, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const record = await jobs.submit(broken, ['normalize_volume']);
    const failed = await jobs.waitFor(record.id, 'failed');
    expect(failed.error?.code).toBe('normalize.invalid_media');
    expect(failed.error?.message).toMatch(/moov atom not found|Invalid data/);
  });

  it('when jobs have run, then no temporary files are left in DATA_DIR/tmp', async () => {
    expect(await readdir(join(platform.dataDir, 'tmp'))).toEqual([]);
  });
});
