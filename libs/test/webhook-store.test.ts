import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import {
  EXPIRY_INDEX,
  JobStore,
  MAX_CALLBACK_URLS,
  MAX_RECORDED_ATTEMPTS,
  addCallback,
  callbackUrls,
  callbacksKey,
  jobRecordSchema,
  recordWebhookAttempt,
  type StoredJob,
  type WebhookAttempt,
} from '@media-jobs/libs';
import { startRedis, type TestServer } from '@media-jobs/libs/testing';

let server: TestServer;
let redis: Redis;
let store: JobStore;
let n = 0;

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.url);
  store = new JobStore({ redis, ttlMs: 3_600_000 });
});
afterEach(async () => {
  await redis.flushall();
});
afterAll(async () => {
  redis?.disconnect();
  await server?.close();
});

const attempt = (i: number, overrides: Partial<WebhookAttempt> = {}): WebhookAttempt => ({
  url: 'https://hooks.example/a?x=1/2',
  event: 'completed',
  webhook_id: 'msg_0123',
  attempt: i,
  at: new Date(1_700_000_000_000 + i).toISOString(),
  status: i % 2 ? 500 : null,
  duration_ms: 12,
  error: 'HTTP 500 "quoted" ünïcode',
  outcome: 'retrying',
  next_attempt_at: new Date(1_700_000_100_000).toISOString(),
  ...overrides,
});

/** A completed download whose result holds what cjson would re-encode differently: an empty array, long floats, slashes. */
async function completedJob(): Promise<StoredJob> {
  const { job } = await store.create('download', `job${++n}_best`, {
    url: 'https://a.example/v.mp4',
    quality: 'best',
  });
  const done = await store.update(job, {
    status: 'completed',
    progress: 100,
    result: {
      file: 'a/b.mp4',
      bytes: 123_456_789_012_345,
      loudness: -16.1234567890123,
      tags: [],
      nested: {},
    },
  });
  return done!;
}

describe('webhook attempts in the record', () => {
  it('when an attempt is recorded, then only the webhooks field changes: the rest of the JSON, the TTL and the index stay', async () => {
    const job = await completedJob();
    const ttlBefore = await redis.pttl(job.key);
    const scoreBefore = await redis.zscore(EXPIRY_INDEX, job.key);
    expect(
      await recordWebhookAttempt(redis, 'download', job.record.id, job.record.created_at, attempt(1)),
    ).toBe('written');
    expect(
      await recordWebhookAttempt(redis, 'download', job.record.id, job.record.created_at, attempt(2)),
    ).toBe('written');
    const raw = (await redis.get(job.key))!;
    expect(raw.startsWith(job.raw.slice(0, -1) + ',"webhooks":[')).toBe(true);
    const parsed = jobRecordSchema.parse(JSON.parse(raw));
    expect(parsed.webhooks).toEqual([attempt(1), attempt(2)]);
    expect({ ...parsed, webhooks: undefined }).toEqual({ ...job.record, webhooks: undefined });
    const ttlAfter = await redis.pttl(job.key);
    expect(ttlAfter).toBeGreaterThan(ttlBefore - 5000);
    expect(ttlAfter).toBeLessThanOrEqual(ttlBefore);
    expect(await redis.zscore(EXPIRY_INDEX, job.key)).toBe(scoreBefore);
  });

  it(`when more than ${MAX_RECORDED_ATTEMPTS} attempts are recorded, then the newest are kept`, async () => {
    const job = await completedJob();
    for (let i = 1; i <= MAX_RECORDED_ATTEMPTS + 5; i++)
      await recordWebhookAttempt(redis, 'download', job.record.id, job.record.created_at, attempt(i));
    const list = jobRecordSchema.parse(JSON.parse((await redis.get(job.key))!)).webhooks!;
    expect(list).toHaveLength(MAX_RECORDED_ATTEMPTS);
    expect(list[0]!.attempt).toBe(6);
    expect(list.at(-1)!.attempt).toBe(MAX_RECORDED_ATTEMPTS + 5);
  });

  it('when the job is still under way or is another generation, then nothing is written, so no worker compare-and-set breaks', async () => {
    const { job } = await store.create('download', `live${++n}_best`, { url: 'https://a.example/v.mp4' });
    expect(
      await recordWebhookAttempt(redis, 'download', job.record.id, job.record.created_at, attempt(1)),
    ).toBe('gone');
    expect(await redis.get(job.key)).toBe(job.raw);
    const done = await completedJob();
    expect(
      await recordWebhookAttempt(redis, 'download', done.record.id, '2000-01-01T00:00:00.000Z', attempt(1)),
    ).toBe('gone');
    expect(await redis.get(done.key)).toBe(done.raw);
    expect(
      await recordWebhookAttempt(redis, 'download', 'nothing_best', done.record.created_at, attempt(1)),
    ).toBe('gone');
  });
});

describe('callback URLs of a job generation', () => {
  it('when callbacks are added to a live job, then the record is untouched and the set holds each URL once, with a TTL past the record', async () => {
    const { job } = await store.create('download', `cb${++n}_best`, { url: 'https://a.example/v.mp4' });
    const { id, created_at } = job.record;
    expect(await addCallback(redis, 'download', id, created_at, 'https://h.example/1')).toEqual({
      added: true,
      status: 'queued',
    });
    await addCallback(redis, 'download', id, created_at, 'https://h.example/1');
    await addCallback(redis, 'download', id, created_at, 'https://h.example/2');
    expect(await callbackUrls(redis, 'download', id, created_at)).toEqual([
      'https://h.example/1',
      'https://h.example/2',
    ]);
    expect(await redis.get(job.key)).toBe(job.raw);
    expect(await redis.pttl(callbacksKey('download', id, created_at))).toBeGreaterThan(
      await redis.pttl(job.key),
    );
    for (let i = 3; i <= MAX_CALLBACK_URLS; i++)
      await addCallback(redis, 'download', id, created_at, `https://h.example/${i}`);
    expect(await addCallback(redis, 'download', id, created_at, 'https://h.example/extra')).toMatchObject({
      added: false,
      reason: 'full',
    });
    // One already there is no new URL.
    expect(await addCallback(redis, 'download', id, created_at, 'https://h.example/1')).toMatchObject({
      added: true,
    });
    expect(
      await addCallback(redis, 'download', id, '2000-01-01T00:00:00.000Z', 'https://h.example/x'),
    ).toEqual({
      added: false,
      reason: 'gone',
    });
  });
});
