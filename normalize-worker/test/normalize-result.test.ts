import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { ffprobe, makeTone, startPlatform, type Platform } from '@media-jobs/libs/testing';
import { startNormalizeWorker, type NormalizeWorker } from '../src/worker.js';
import { submitter, type Submitter } from './helpers.js';

let platform: Platform;
let worker: NormalizeWorker;
let redis: Redis;
let nc: NatsConnection;
let jobs: Submitter;
let scratch: string;

beforeAll(async () => {
  platform = await startPlatform();
  worker = await startNormalizeWorker(platform.config());
  redis = new Redis(platform.redis.url);
  nc = await connect({ servers: platform.nats.url });
  jobs = submitter(nc, redis, platform.dataDir);
  scratch = await mkdtemp(join(tmpdir(), 'mj-norm-measured-'));
});

afterAll(async () => {
  await worker?.stop();
  redis?.disconnect();
  await nc?.close();
  await platform?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe('a normalize result says what the file holds', () => {
  it('when a record asks for opus with sample_rate_16k (the gateway now refuses it), then the result gives the 48 kHz the file decodes at', async () => {
    const input = join(scratch, 'tone.wav');
    await makeTone(input, { seconds: 1, sampleRate: 44100 });
    const record = await jobs.submit(input, ['sample_rate_16k'], 'opus');
    const done = await jobs.waitFor(record.id, 'completed');
    const probe = await ffprobe(join(platform.dataDir, 'normalized', String(done.result?.file)));
    const audio = probe.streams.find((s) => s.codec_type === 'audio');
    expect(probe.format.format_name).toBe('ogg');
    expect(done.result).toMatchObject({
      format: 'opus',
      codec: audio?.codec_name,
      sample_rate: Number(audio?.sample_rate),
      channels: audio?.channels,
      size_bytes: Number(probe.format.size),
    });
    expect(done.result?.sample_rate).toBe(48000);
  });
});
