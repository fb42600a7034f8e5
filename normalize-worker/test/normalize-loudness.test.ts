import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { normalizeResultSchema } from '@media-jobs/libs';
import { startPlatform, type Platform } from '@media-jobs/libs/testing';
import { MAX_GAIN_DB } from '../src/ffmpeg.js';
import { startNormalizeWorker, type NormalizeWorker } from '../src/worker.js';
import { LOUDNESS_KINDS, loudnessOf, submitter, type Submitter } from './helpers.js';

let platform: Platform;
let worker: NormalizeWorker;
let redis: Redis;
let nc: NatsConnection;
let jobs: Submitter;
let fixtures: string;

const TARGET = -16;
const CEILING = -1.5;
/** The promise: the output's integrated loudness (ebur128 on the written file) within this of its aim. */
const TOLERANCE_LU = 0.3;

beforeAll(async () => {
  platform = await startPlatform();
  worker = await startNormalizeWorker(platform.config({ NORMALIZE_CONCURRENCY: '2' }));
  redis = new Redis(platform.redis.url);
  nc = await connect({ servers: platform.nats.url });
  jobs = submitter(nc, redis, platform.dataDir, TARGET);
  fixtures = await mkdtemp(join(tmpdir(), 'mj-norm-loud-'));
});

afterAll(async () => {
  await worker?.stop();
  redis?.disconnect();
  await nc?.close();
  await platform?.close();
  if (fixtures) await rm(fixtures, { recursive: true, force: true });
});

async function normalized(
  kind: keyof typeof LOUDNESS_KINDS,
  format: 'opus' | 'wav' | 'mp3' | 'm4a' = 'opus',
) {
  const input = await LOUDNESS_KINDS[kind](join(fixtures, `${kind}-${format}.wav`));
  const before = await loudnessOf(input);
  const record = await jobs.submit(input, ['normalize_volume'], format);
  const done = await jobs.waitFor(record.id, 'completed', 120_000);
  expect(normalizeResultSchema.parse(done.result)).toEqual(done.result);
  const result = done.result as Record<string, any>;
  const after = await loudnessOf(join(platform.dataDir, 'normalized', String(result.file)));
  return { before, after, loudness: result.loudness };
}

describe('normalize_volume lands on the target', () => {
  it.each([
    ['quiet', 'opus', false],
    ['loud', 'opus', false],
    ['dynamic', 'opus', true],
    ['dynamic', 'm4a', true],
    ['quiet', 'wav', false],
  ] as const)(
    'when a %s input is normalized to %s, then the file is within 0.3 LU of the target under the ceiling, and the record says what the file holds',
    async (kind, format, limited) => {
      const { before, after, loudness } = await normalized(kind, format);
      expect(Math.abs(before.integrated - TARGET)).toBeGreaterThan(5);
      expect(Math.abs(after.integrated - TARGET)).toBeLessThanOrEqual(TOLERANCE_LU);
      expect(after.truePeak as number).toBeLessThanOrEqual(CEILING + 0.2);
      expect(loudness.limiter).toBe(limited);
      expect(loudness.gain_capped).toBe(false);
      // The record's figures are the file's: measured on the encoded stream, not before the encoder.
      expect(loudness.input.integrated_lufs).toBeCloseTo(before.integrated, 0);
      expect(Math.abs(loudness.output.integrated_lufs - after.integrated)).toBeLessThanOrEqual(0.1);
      expect(
        Math.abs((loudness.output.true_peak_dbtp as number) - (after.truePeak as number)),
      ).toBeLessThanOrEqual(0.3);
    },
  );

  it('when a near-silent input would need more than +30 dB, then the gain is capped at 30 dB, the file lands at input + 30 dB and the record says so', async () => {
    const { before, after, loudness } = await normalized('nearSilent');
    expect(before.integrated).toBeLessThan(TARGET - MAX_GAIN_DB - 5);
    expect(loudness.gain_capped).toBe(true);
    expect(loudness.gain_db).toBe(MAX_GAIN_DB);
    expect(Math.abs(after.integrated - (before.integrated + MAX_GAIN_DB))).toBeLessThanOrEqual(TOLERANCE_LU);
    expect(Math.abs(loudness.output.integrated_lufs - after.integrated)).toBeLessThanOrEqual(0.1);
    expect(after.truePeak as number).toBeLessThanOrEqual(CEILING + 0.2);
  });
});
