import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  EXPIRY_INDEX,
  JobStore,
  SWEEP_LOCK_KEY,
  createRedis,
  retainUpload,
  uploadRefsKey,
  type Config,
  type Redis,
  type Storage,
} from '@media-jobs/libs';
import { startPlatform, waitUntil, type Platform } from '@media-jobs/libs/testing';
import { startJanitor, type Janitor } from '../src/janitor.js';
import type { SweepHooks } from '../src/sweep.js';
import { captureLogger, normalizeIdFor, seedJob, storageOf, writeData } from './helpers.js';

let platform: Platform;
let config: Config;
let redis: Redis;
let storage: Storage;
let store: JobStore;
let janitor: Janitor;
const hooks: SweepHooks = {};

beforeAll(async () => {
  platform = await startPlatform();
  config = platform.config({ CACHE_TTL_HOURS: '1' });
  redis = createRedis(config);
  storage = storageOf(config);
  store = new JobStore({ redis, ttlMs: config.cacheTtlMs });
  janitor = await startJanitor(config, captureLogger('info').logger, { hooks, lockTtlMs: 1000 });
});
afterAll(async () => {
  await janitor?.stop();
  redis?.disconnect();
  await platform?.close();
});
beforeEach(() => {
  delete hooks.afterRead;
  delete hooks.afterClaim;
  delete hooks.beforeDelete;
  delete hooks.afterFiles;
});

/** Seeds a job that Redis expires at once, as if its TTL had passed. */
async function expiredJob(
  kind: 'download' | 'normalize',
  id: string,
  opts: { sha256?: string } = {},
): Promise<string[]> {
  const short = new JobStore({ redis, ttlMs: 50 });
  const files = await seedJob(short, redis, storage, kind, id, opts);
  const key = kind === 'download' ? `job:${id}` : `audio_job:${id}`;
  await waitUntil(`Redis to expire ${key}`, async () => (await redis.exists(key)) === 0);
  return files;
}

/** Tracks whether a promise has settled, without awaiting it. */
function track<T>(promise: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  void promise.finally(() => (done = true)).catch(() => undefined);
  return { promise, settled: () => done };
}

/**
 * Counts the scripts Redis runs (EVAL, EVALSHA, as MONITOR reports them) that name `key`:
 * a claim or retain that waits for a tombstone runs its script again and again, each time
 * answered "busy", so a few runs prove it is waiting rather than not yet started.
 */
async function scriptRunsOn(key: string): Promise<{ count(): number; stop(): void }> {
  const monitor = await redis.monitor();
  let runs = 0;
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    const command = args[0]?.toLowerCase();
    if (source !== 'lua' && (command === 'eval' || command === 'evalsha') && args.includes(key)) runs += 1;
  });
  return { count: () => runs, stop: () => monitor.disconnect() };
}

/**
 * Starts a claim or retain while the tombstone `key` is held, and resolves once it has been
 * answered "busy" three times and is still unsettled: it waits, rather than not having run yet.
 */
async function startWaiting<T>(key: string, start: () => Promise<T>): Promise<ReturnType<typeof track<T>>> {
  const runs = await scriptRunsOn(key);
  try {
    const pending = track(start());
    await waitUntil(`a wait on ${key}`, () => runs.count() >= 3 || pending.settled());
    expect(pending.settled()).toBe(false);
    return pending;
  } finally {
    runs.stop();
  }
}

describe('sweep race safety', () => {
  it('when a job is re-created after the sweep read the index but before it claimed the key, then the new record and file stay', async () => {
    const [oldFile] = await expiredJob('download', 'early_best');
    hooks.afterRead = async () => {
      delete hooks.afterRead;
      await store.claim('download', 'early_best', { again: true });
      await writeData(oldFile as string, 4321);
    };
    const summary = await janitor.sweepNow('interval');
    expect(summary.removed.download).toBe(0);
    expect((await store.get('download', 'early_best'))?.record.request).toEqual({ again: true });
    expect((await readFile(oldFile as string)).length).toBe(4321);
    expect(Number(await redis.zscore(EXPIRY_INDEX, 'job:early_best'))).toBeGreaterThan(Date.now());
  });

  for (const step of ['afterClaim', 'afterFiles'] as const) {
    it(`when a job is re-created ${step === 'afterClaim' ? 'before' : 'after'} the sweep deletes the old files, then the claim waits and the new job keeps its record and files`, async () => {
      const [oldFile] = await expiredJob('download', `mid_${step}`);
      let claim: ReturnType<typeof track<Awaited<ReturnType<JobStore['claim']>>>> | undefined;
      hooks[step] = async () => {
        delete hooks[step];
        claim = await startWaiting(`sweeping:job:mid_${step}`, () =>
          store.claim('download', `mid_${step}`, { again: true }),
        );
        expect(await redis.exists(`job:mid_${step}`)).toBe(0);
      };
      const summary = await janitor.sweepNow('interval');
      expect(summary.removed.download).toBe(1);
      const { created } = await (claim as NonNullable<typeof claim>).promise;
      expect(created).toBe(true);
      expect(existsSync(oldFile as string)).toBe(false);
      // The new job's worker writes its result; the finished sweep can no longer touch it.
      const newFile = await writeData(join(storage.downloads, `mid_${step}.webm`), 99);
      expect(await janitor.sweepNow('interval')).toMatchObject({ removed: { download: 0 } });
      expect(existsSync(newFile)).toBe(true);
      expect((await store.get('download', `mid_${step}`))?.record.status).toBe('queued');
      expect(Number(await redis.zscore(EXPIRY_INDEX, `job:mid_${step}`))).toBeGreaterThan(Date.now());
    });
  }

  it('when a new job retains a shared upload before the sweep drops the old reference, then the upload stays', async () => {
    const old = normalizeIdFor('kept-upload', 'mono');
    const next = normalizeIdFor('kept-upload', 'remove_noise');
    const [oldOut, upload] = await expiredJob('normalize', old.id, { sha256: old.sha256 });
    hooks.afterClaim = async () => {
      delete hooks.afterClaim;
      await store.claim('normalize', next.id, {});
      await retainUpload(redis, next.id);
    };
    expect(await janitor.sweepNow('interval')).toMatchObject({ removed: { normalize: 1 } });
    expect([existsSync(oldOut as string), existsSync(upload as string)]).toEqual([false, true]);
    expect(await redis.smembers(uploadRefsKey(old.id.slice(0, 16)))).toEqual([`audio_job:${next.id}`]);
  });

  it('when a new job retains a shared upload while the upload of its last user is being deleted, then the retain waits and the new copy stays', async () => {
    const old = normalizeIdFor('race-upload', 'mono');
    const next = normalizeIdFor('race-upload', 'remove_noise');
    const [, upload] = await expiredJob('normalize', old.id, { sha256: old.sha256 });
    let retain: ReturnType<typeof track<void>> | undefined;
    hooks.beforeDelete = async () => {
      delete hooks.beforeDelete;
      await store.claim('normalize', next.id, {});
      retain = await startWaiting(`sweeping:${uploadRefsKey(old.id.slice(0, 16))}`, () =>
        retainUpload(redis, next.id),
      );
    };
    await janitor.sweepNow('interval');
    await retain?.promise;
    expect(existsSync(upload as string)).toBe(false);
    // The gateway places the upload after the retain, as retainUpload asks.
    await writeData(upload as string, 777);
    expect(await janitor.sweepNow('interval')).toMatchObject({ removed: { normalize: 0 } });
    expect((await readFile(upload as string)).length).toBe(777);
    expect(await redis.smembers(uploadRefsKey(old.id.slice(0, 16)))).toEqual([`audio_job:${next.id}`]);
  });

  it('when a sweep dies after deleting the record, then the job reads as expired, nothing live changed, and the next sweep finishes', async () => {
    const [file] = await expiredJob('download', 'crash_best');
    hooks.afterClaim = async () => {
      delete hooks.afterClaim;
      throw new Error('killed');
    };
    await expect(janitor.sweepNow('interval')).rejects.toThrow('killed');
    expect(existsSync(file as string)).toBe(true);
    expect(await store.isExpired('crash_best')).toBe(true);
    const summary = await janitor.sweepNow('interval');
    expect(summary.removed.download).toBe(1);
    expect(existsSync(file as string)).toBe(false);
    expect(await redis.zscore(EXPIRY_INDEX, 'job:crash_best')).toBeNull();
    expect(await redis.exists('sweeping:job:crash_best')).toBe(0);
  });

  it('when a janitor died holding the sweep lock, then sweeps are skipped until the lock expires, and the next one does the work', async () => {
    const [file] = await expiredJob('download', 'locked_best');
    await redis.set(SWEEP_LOCK_KEY, 'dead-janitor', 'PX', 600);
    expect(await janitor.sweepNow('interval')).toMatchObject({ skipped: true, removed: { download: 0 } });
    expect(existsSync(file as string)).toBe(true);
    await waitUntil(
      "the dead janitor's lock to expire",
      async () => (await redis.exists(SWEEP_LOCK_KEY)) === 0,
    );
    expect(await janitor.sweepNow('interval')).toMatchObject({ skipped: false, removed: { download: 1 } });
    expect(existsSync(file as string)).toBe(false);
  });

  it('when two janitors sweep at the same time, then only one of them sweeps', async () => {
    const other = await startJanitor(config, captureLogger('info').logger);
    try {
      const [file] = await expiredJob('download', 'twice_best');
      let release!: () => void;
      let entered = false;
      hooks.afterRead = async () => {
        delete hooks.afterRead;
        entered = true;
        await new Promise<void>((r) => (release = r));
      };
      const first = janitor.sweepNow('interval');
      await waitUntil('the first sweep to read the index', () => entered);
      expect(await other.sweepNow('interval')).toMatchObject({ skipped: true });
      release();
      expect(await first).toMatchObject({ skipped: false, removed: { download: 1 } });
      expect(existsSync(file as string)).toBe(false);
    } finally {
      await other.stop();
      await other.stop();
    }
  });
});
