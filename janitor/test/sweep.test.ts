import { existsSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  EXPIRY_INDEX,
  JobStore,
  LAST_SWEEP_KEY,
  createRedis,
  janitorRemovedEvent,
  janitorSweepEvent,
  uploadRefsKey,
  type Config,
  type NatsConnection,
  type Redis,
  type Storage,
} from '@media-jobs/libs';
import { startPlatform, waitUntil, type Platform } from '@media-jobs/libs/testing';
import { startJanitor, type Janitor } from '../src/janitor.js';
import { HOUR, captureLogger, collect, normalizeIdFor, seedJob, storageOf } from './helpers.js';

let platform: Platform;
let config: Config;
let redis: Redis;
let storage: Storage;
let janitor: Janitor;
let events: { nc: NatsConnection; events: unknown[] };
const log = captureLogger();
/** The janitor's clock runs this far ahead of the real one. */
let shift = 0;

beforeAll(async () => {
  platform = await startPlatform();
  config = platform.config({ CACHE_TTL_HOURS: '1', CLEANUP_INTERVAL_MINUTES: '30' });
  redis = createRedis(config);
  storage = storageOf(config);
  janitor = await startJanitor(config, log.logger, { now: () => Date.now() + shift });
  events = await collect(config, 'events.janitor.>');
});
afterAll(async () => {
  await janitor?.stop();
  await events?.nc.close();
  redis?.disconnect();
  await platform?.close();
});
beforeEach(async () => {
  shift = 0;
  events.events.length = 0;
});

/** A store whose jobs expire `offsetMs` later than real ones. */
const storeAt = (offsetMs: number) =>
  new JobStore({ redis, ttlMs: config.cacheTtlMs, now: () => Date.now() + offsetMs });

describe('expiry sweep', () => {
  it('when jobs expired, then their records, index entries and files go and live jobs keep theirs', async () => {
    const expired = storeAt(0);
    const live = storeAt(1.5 * HOUR);
    const oldFiles = [
      ...(await seedJob(expired, redis, storage, 'download', 'exp1_best')),
      ...(await seedJob(expired, redis, storage, 'normalize', normalizeIdFor('a', 'mono').id, {
        sha256: normalizeIdFor('a', 'mono').sha256,
      })),
    ];
    const liveFiles = await seedJob(live, redis, storage, 'download', 'live1_best');
    shift = 2 * HOUR;
    const summary = await janitor.sweepNow('admin');
    expect(summary).toMatchObject({
      skipped: false,
      removed: { download: 1, normalize: 1, orphan: 0 },
      files_removed: 3,
      bytes_freed: 3000,
    });
    for (const f of oldFiles) expect(existsSync(f)).toBe(false);
    for (const f of liveFiles) expect(existsSync(f)).toBe(true);
    expect(await redis.exists('job:exp1_best', `audio_job:${normalizeIdFor('a', 'mono').id}`)).toBe(0);
    expect(await redis.zrange(EXPIRY_INDEX, '0', '-1')).toEqual(['job:live1_best']);
    expect(await redis.keys('sweeping:*')).toEqual([]);
  });

  it('when more jobs expired than one batch holds, then every batch is swept and live jobs stay', async () => {
    const small = await startJanitor(config, captureLogger('info').logger, {
      batchSize: 3,
      fileBatchSize: 5,
      now: () => Date.now() + 2 * HOUR,
    });
    try {
      const expired: string[] = [];
      for (let i = 0; i < 23; i++) {
        const kind = i % 4 === 0 ? 'normalize' : 'download';
        const id = kind === 'download' ? `many${i}_best` : normalizeIdFor(`many${i}`, 'mono').id;
        const sha256 = kind === 'normalize' ? normalizeIdFor(`many${i}`, 'mono').sha256 : undefined;
        expired.push(...(await seedJob(storeAt(0), redis, storage, kind, id, sha256 ? { sha256 } : {})));
      }
      const live = await seedJob(storeAt(3 * HOUR), redis, storage, 'download', 'manylive_best');
      const summary = await small.sweepNow('admin');
      expect(summary.removed.download + summary.removed.normalize).toBeGreaterThanOrEqual(23);
      expect(expired.filter((f) => existsSync(f))).toEqual([]);
      expect(live.filter((f) => !existsSync(f))).toEqual([]);
      expect(await redis.zcount(EXPIRY_INDEX, '-inf', Date.now() + 2 * HOUR)).toBe(0);
      expect(await redis.keys('sweeping:*')).toEqual([]);
    } finally {
      await small.stop();
    }
  });

  it('when Redis expired the records before the sweep, then their files are still removed', async () => {
    const short = new JobStore({ redis, ttlMs: 300 });
    const files = await seedJob(short, redis, storage, 'download', 'gone_720p');
    await waitUntil('Redis to expire job:gone_720p', async () => (await redis.exists('job:gone_720p')) === 0);
    expect(await redis.zscore(EXPIRY_INDEX, 'job:gone_720p')).not.toBeNull();
    const summary = await janitor.sweepNow('admin');
    expect(summary.removed.download).toBe(1);
    expect(existsSync(files[0] as string)).toBe(false);
    expect(await redis.zscore(EXPIRY_INDEX, 'job:gone_720p')).toBeNull();
  });

  it('when an index entry says expired but the record still lives on, then the sweep leaves record and files alone', async () => {
    const [file] = await seedJob(storeAt(3 * HOUR), redis, storage, 'download', 'lag_best');
    await redis.zadd(EXPIRY_INDEX, Date.now() - HOUR, 'job:lag_best');
    const summary = await janitor.sweepNow('admin');
    expect(summary.removed.download).toBe(0);
    expect(existsSync(file as string)).toBe(true);
    expect(await redis.exists('job:lag_best')).toBe(1);
    await redis.zadd(EXPIRY_INDEX, Date.now() + 4 * HOUR, 'job:lag_best');
  });

  it('when an upload serves several normalize jobs, then it goes only with the last of them', async () => {
    const first = normalizeIdFor('shared', 'mono');
    const second = normalizeIdFor('shared', 'mono-sample_rate_16k');
    const [firstOut, upload] = await seedJob(storeAt(0), redis, storage, 'normalize', first.id, {
      sha256: first.sha256,
    });
    const [secondOut] = await seedJob(storeAt(3 * HOUR), redis, storage, 'normalize', second.id);
    shift = 2 * HOUR;
    expect((await janitor.sweepNow('admin')).removed.normalize).toBe(1);
    expect([
      existsSync(firstOut as string),
      existsSync(upload as string),
      existsSync(secondOut as string),
    ]).toEqual([false, true, true]);
    expect(await redis.smembers(uploadRefsKey(first.id.slice(0, 16)))).toEqual([`audio_job:${second.id}`]);
    shift = 5 * HOUR;
    expect((await janitor.sweepNow('admin')).removed.normalize).toBe(1);
    expect([existsSync(upload as string), existsSync(secondOut as string)]).toEqual([false, false]);
    expect(await redis.exists(uploadRefsKey(first.id.slice(0, 16)))).toBe(0);
  });

  it('when a sweep removes jobs, then one removed event per job and one sweep event carry schema-valid payloads', async () => {
    await seedJob(storeAt(0), redis, storage, 'download', 'ev1_best', { bytes: 2048 });
    await seedJob(storeAt(0), redis, storage, 'download', 'ev2_best', { bytes: 10 });
    shift = 2 * HOUR;
    const summary = await janitor.sweepNow('admin');
    // Events of earlier tests' sweeps may still be arriving: wait for this sweep's own.
    const ofThisSweep = (e: unknown) => {
      const parsed = janitorSweepEvent.safeParse(e);
      return parsed.success &&
        parsed.data.trigger === 'admin' &&
        parsed.data.duration_ms === summary.duration_ms &&
        parsed.data.next_run_at === summary.next_run_at
        ? parsed.data
        : null;
    };
    const sweep = await waitUntil('the sweep event of this sweep', () =>
      events.events.map(ofThisSweep).find(Boolean),
    );
    const removed = await waitUntil('removed events for ev1_best and ev2_best', () => {
      const found = events.events
        .filter((e) => (e as { type: string }).type === 'removed')
        .map((e) => janitorRemovedEvent.parse(e))
        .filter((e) => e.job_id.startsWith('ev'));
      return found.length >= 2 ? found : null;
    });
    expect(removed.map((e) => e.job_id).sort()).toEqual(['ev1_best', 'ev2_best']);
    expect(removed.find((e) => e.job_id === 'ev1_best')).toMatchObject({
      kind: 'download',
      key: 'job:ev1_best',
      files: ['downloads/ev1_best.mp4'],
      bytes_freed: 2048,
      reason: 'expired',
    });
    expect(sweep).toMatchObject({
      trigger: 'admin',
      removed: { download: 2, normalize: 0, orphan: 0 },
      files_removed: 2,
      bytes_freed: 2058,
    });
  });

  it('when a sweep ends, then it logs one Cleanup line, a debug line per job and stores its summary for /admin/stats', async () => {
    await seedJob(storeAt(0), redis, storage, 'download', 'log1_best', { bytes: 1536 });
    shift = 2 * HOUR;
    const summary = await janitor.sweepNow('admin');
    const lines = log.lines();
    const cleanup = lines.filter((l) => l.level === 'info' && l.msg.startsWith('Cleanup:')).pop();
    expect(cleanup?.msg).toMatch(
      /^Cleanup: removed 1 job \(1 download, 0 normalize\), freed 1\.5 KB in \d+ ms; next in 30min; orphan scan: \d+ files?, pass \d+ complete$/,
    );
    expect(
      lines.some(
        (l) =>
          l.level === 'debug' &&
          l.msg === 'Removed expired job' &&
          (l as { job_id?: string }).job_id === 'log1_best',
      ),
    ).toBe(true);
    expect(JSON.parse((await redis.get(LAST_SWEEP_KEY)) as string)).toEqual(summary);
  });
});
