import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { jobProgressEvent, type JobRecord } from '@media-jobs/libs';
import { startPlatform, type Platform } from '@media-jobs/libs/testing';
import { startNormalizeWorker, type NormalizeWorker } from '../src/worker.js';
import { interSamplePeaks, submitter, type Submitter } from './helpers.js';

let platform: Platform;
let worker: NormalizeWorker;
let redis: Redis;
let nc: NatsConnection;
let fixtures: string;

beforeAll(async () => {
  platform = await startPlatform();
  worker = await startNormalizeWorker(platform.config());
  redis = new Redis(platform.redis.url);
  nc = await connect({ servers: platform.nats.url });
  fixtures = await mkdtemp(join(tmpdir(), 'mj-norm-progress-'));
});

afterAll(async () => {
  await worker?.stop();
  redis?.disconnect();
  await nc?.close();
  await platform?.close();
  if (fixtures) await rm(fixtures, { recursive: true, force: true });
});

interface Seen {
  subject: string;
  progress: number;
  stage: string | undefined;
  at: number;
}

/** Collects every normalize progress event published from now on, over a core NATS subscription. */
async function watchProgress(): Promise<{ seen: Seen[]; sub: Subscription }> {
  const seen: Seen[] = [];
  const sub = nc.subscribe('events.job.normalize.*.progress', {
    callback: (_err, msg) => {
      const event = jobProgressEvent.parse(msg.json());
      seen.push({
        subject: msg.subject,
        progress: event.progress,
        stage: event.stage,
        at: Date.parse(event.at),
      });
    },
  });
  await nc.flush(); // the subscription is live on the server before the job is queued
  return { seen, sub };
}

async function runWith(jobs: Submitter, input: string): Promise<{ done: JobRecord; seen: Seen[] }> {
  const { seen, sub } = await watchProgress();
  try {
    const record = await jobs.submit(input, ['normalize_volume']);
    const done = await jobs.waitFor(record.id, 'completed', 90_000);
    await nc.flush();
    return { done, seen: seen.filter((s) => s.subject === `events.job.normalize.${record.id}.progress`) };
  } finally {
    sub.unsubscribe();
  }
}

describe('normalize progress', () => {
  it('when a long job runs a correction pass, then its progress events stay within 0..100, never go back, come at most a few a second, and the record ends at 100', async () => {
    // A minute of audio whose inter-sample peaks make the first encode miss the true-peak
    // ceiling at a -19 LUFS target (see the verification test), so corrected encodes follow,
    // each long enough (opus) to publish progress of its own.
    const input = await interSamplePeaks(join(fixtures, 'long-inter-sample.wav'), 60);
    const { done, seen } = await runWith(submitter(nc, redis, platform.dataDir, -19), input);

    expect((done.result as Record<string, any>).loudness.corrections).toBeGreaterThanOrEqual(1);
    expect(done.progress).toBe(100);
    expect(seen.length).toBeGreaterThanOrEqual(4);
    const values = seen.map((s) => s.progress);
    for (const p of values) {
      expect(p).toBeGreaterThanOrEqual(0);
      expect(p).toBeLessThanOrEqual(100);
    }
    // Each value at least the one before: a bar never jumps back, not even for the correction pass.
    for (let i = 1; i < values.length; i += 1)
      expect(values[i]).toBeGreaterThanOrEqual(values[i - 1] as number);
    expect(values.some((p) => p > 50)).toBe(true);
    // Throttled to one per 250 ms: never two within 200 ms of each other.
    for (let i = 1; i < seen.length; i += 1)
      expect((seen[i] as Seen).at - (seen[i - 1] as Seen).at).toBeGreaterThanOrEqual(200);
    expect(seen.map((s) => s.stage)).toEqual(expect.arrayContaining(['encoding', 'correcting']));
  }, 90_000);
});
