import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { EXPIRY_INDEX, JobStore } from '@media-jobs/libs';
import { startRedis, type TestServer } from '@media-jobs/libs/testing';

let server: TestServer;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.url);
});
afterAll(async () => {
  redis.disconnect();
  await server.close();
});
beforeEach(async () => {
  await redis.flushall();
});

const HOUR = 3_600_000;

describe('JobStore', () => {
  it('when a job is claimed, then the key TTL equals the time left until expires_at and the index holds it', async () => {
    const store = new JobStore({ redis, ttlMs: 0.5 * HOUR });
    const { created, job } = await store.claim('download', 'abc_best', { url: 'http://x', quality: 'best' });
    expect(created).toBe(true);
    const pttl = await redis.pttl('job:abc_best');
    const left = Date.parse(job.record.expires_at) - Date.now();
    expect(Math.abs(pttl - left)).toBeLessThan(1000);
    expect(pttl).toBeGreaterThan(0.5 * HOUR - 5000);
    expect(Number(await redis.zscore(EXPIRY_INDEX, 'job:abc_best'))).toBe(Date.parse(job.record.expires_at));
  });

  it('when 50 identical claims race, then exactly one creates the job', async () => {
    const store = new JobStore({ redis, ttlMs: HOUR });
    const results = await Promise.all(
      Array.from({ length: 50 }, () => store.claim('download', 'race_720p', { url: 'u', quality: '720p' })),
    );
    expect(results.filter((r) => r.created)).toHaveLength(1);
    const ids = new Set(results.map((r) => r.job.record.created_at));
    expect(ids.size).toBe(1);
    expect(await store.cacheStats()).toMatchObject({ download: { hits: 49, misses: 1 } });
  });

  it('when a job failed, then a new claim queues it again', async () => {
    const store = new JobStore({ redis, ttlMs: HOUR });
    const first = await store.claim('normalize', 'f_x', {});
    const failed = await store.update(first.job, { status: 'failed', error: { code: 'x', message: 'y' } });
    expect(failed).not.toBeNull();
    const again = await store.claim('normalize', 'f_x', {});
    expect(again.created).toBe(true);
    expect(again.job.record.status).toBe('queued');
    expect(again.job.record.error).toBeUndefined();
  });

  it('when the record changed since it was read, then replace refuses the stale write', async () => {
    const store = new JobStore({ redis, ttlMs: HOUR });
    const { job } = await store.claim('download', 'cas_best', {});
    const a = await store.update(job, { status: 'processing', progress: 10 });
    expect(a).not.toBeNull();
    expect(await store.update(job, { progress: 50 })).toBeNull();
    await store.remove('download', 'cas_best');
    expect(await store.update(a!, { progress: 60 })).toBeNull();
    expect(await redis.exists('job:cas_best')).toBe(0);
    expect(await redis.zscore(EXPIRY_INDEX, 'job:cas_best')).toBeNull();
  });

  it('when an update sets a new expires_at, then the key TTL and the index follow it', async () => {
    const store = new JobStore({ redis, ttlMs: HOUR });
    const { job } = await store.claim('download', 'ttl_best', {});
    const expires = new Date(Date.now() + 2 * HOUR).toISOString();
    await store.update(job, { status: 'completed', expires_at: expires });
    const pttl = await redis.pttl('job:ttl_best');
    expect(Math.abs(pttl - (Date.parse(expires) - Date.now()))).toBeLessThan(1000);
    expect(Number(await redis.zscore(EXPIRY_INDEX, 'job:ttl_best'))).toBe(Date.parse(expires));
  });

  it('when a job goes through every state, then after each write the key TTL and the index agree with expires_at', async () => {
    const store = new JobStore({ redis, ttlMs: 0.5 * HOUR });
    const agree = async (job: { key: string; record: { expires_at: string } }) => {
      const expires = Date.parse(job.record.expires_at);
      expect(Math.abs((await redis.pttl(job.key)) - (expires - Date.now()))).toBeLessThan(1000);
      expect(Number(await redis.zscore(EXPIRY_INDEX, job.key))).toBe(expires);
    };
    let job = (await store.claim('download', 'life_best', {})).job;
    await agree(job);
    for (const patch of [
      { status: 'processing' as const, attempts: 1 },
      { progress: 40 },
      { status: 'queued' as const, progress: 0, error: { code: 'download.network', message: 'retry' } },
      { status: 'processing' as const, attempts: 2 },
      { status: 'failed' as const, error: { code: 'download.network', message: 'gave up' } },
    ]) {
      const next = await store.update(job, patch);
      expect(next).not.toBeNull();
      job = next!;
      await agree(job);
    }
    job = (await store.claim('download', 'life_best', {})).job;
    await agree(job);
    const done = await store.update(job, { status: 'completed', expires_at: store.expiresFromNow() });
    await agree(done!);
  });

  it('when jobs are listed with filters, then only matching live jobs come back, newest first, in bounded pages', async () => {
    let t = Date.now();
    const store = new JobStore({ redis, ttlMs: HOUR, now: () => t });
    for (let i = 0; i < 5; i++) {
      t += 1000;
      await store.claim('download', `d${i}_best`, {});
      t += 1000;
      await store.claim('normalize', `n${i}_mono`, {});
    }
    const page1 = await store.list({ kind: 'download', limit: 3 });
    expect(page1.jobs.map((j) => j.id)).toEqual(['d4_best', 'd3_best', 'd2_best']);
    // A job created between two pages goes ahead of the cursor: the next page neither repeats nor skips.
    t += 1000;
    await store.claim('download', 'd5_best', {});
    const page2 = await store.list({ kind: 'download', limit: 3, cursor: page1.next_cursor ?? undefined });
    expect(page2.jobs.map((j) => j.id)).toEqual(['d1_best', 'd0_best']);
    expect(page2.next_cursor).toBeNull();
    expect((await store.list({ status: 'completed', limit: 10 })).jobs).toEqual([]);
  });

  it('when many jobs share one expiry, then the pages still hold each exactly once', async () => {
    const fixed = Date.now();
    const store = new JobStore({ redis, ttlMs: HOUR, now: () => fixed });
    const ids = Array.from({ length: 7 }, (_, i) => `same${i}_best`);
    for (const id of ids) await store.claim('download', id, {});
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.list({ limit: 2, ...(cursor ? { cursor } : {}) });
      seen.push(...page.jobs.map((j) => j.id));
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    expect(seen.sort()).toEqual(ids.sort());
  });

  it('when a job is looked up by id alone, then find checks both kinds', async () => {
    const store = new JobStore({ redis, ttlMs: HOUR });
    await store.claim('normalize', '0123456789abcdef_mono', {});
    expect((await store.find('0123456789abcdef_mono'))?.record.kind).toBe('normalize');
    expect(await store.find('nothing_here')).toBeNull();
  });
});
