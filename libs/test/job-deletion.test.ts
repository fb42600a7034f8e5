import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EXPIRY_INDEX,
  JobStore,
  createRedis,
  createStorage,
  deleteJob,
  discardStaleOutput,
  ensureStorage,
  lockToken,
  releaseIfOwner,
  sweepingKey,
  type Redis,
  type Storage,
} from '@media-jobs/libs';
import { startRedis, tempDataDir, type TestServer } from '@media-jobs/libs/testing';

let server: TestServer;
let redis: Redis;
let data: { dir: string; remove(): Promise<void> };
let storage: Storage;
let store: JobStore;

beforeAll(async () => {
  server = await startRedis();
  redis = createRedis({ redisUrl: server.url });
  data = await tempDataDir();
  storage = createStorage(data.dir);
  await ensureStorage(storage);
  store = new JobStore({ redis, ttlMs: 3_600_000 });
});
afterAll(async () => {
  redis?.disconnect();
  await data?.remove();
  await server?.close();
});

async function output(id: string): Promise<string> {
  const path = join(storage.downloads, `${id}.mp4`);
  await writeFile(path, id);
  return path;
}

describe('deleteJob', () => {
  it('when the job exists, then record and index entries go, its files go, and the tombstone is held in between and released after', async () => {
    await store.claim('download', 'del_best', {});
    const file = await output('del_best');
    const seen: number[] = [];
    const deleted = await deleteJob(redis, storage, 'download', 'del_best', {
      afterClaim: async (key) => void seen.push(await redis.exists(sweepingKey(key), key)),
      afterFiles: async (key) => void seen.push(await redis.exists(sweepingKey(key))),
    });
    expect(deleted).toMatchObject({ record: { id: 'del_best' }, removed: [file] });
    expect(seen).toEqual([1, 1]);
    expect(existsSync(file)).toBe(false);
    expect(await redis.zscore(EXPIRY_INDEX, 'job:del_best')).toBeNull();
    expect(await redis.exists(sweepingKey('job:del_best'))).toBe(0);
  });

  it('when there is no such job, then it answers null and takes no tombstone', async () => {
    expect(await deleteJob(redis, storage, 'download', 'none_best')).toBeNull();
    expect(await redis.exists(sweepingKey('job:none_best'))).toBe(0);
  });
});

describe('discardStaleOutput', () => {
  it('when a record with that id exists, then the output stays (it may be that job’s file)', async () => {
    await store.claim('download', 'live_best', {});
    const file = await output('live_best');
    expect(await discardStaleOutput(redis, 'download', 'live_best', [file])).toBe('kept_live');
    expect(existsSync(file)).toBe(true);
  });

  it('when there is neither record nor index entry, then the output goes under the tombstone, which is released', async () => {
    const file = await output('gone_best');
    expect(await discardStaleOutput(redis, 'download', 'gone_best', [file])).toBe('removed');
    expect(existsSync(file)).toBe(false);
    expect(await redis.exists(sweepingKey('job:gone_best'))).toBe(0);
  });

  it('when the index still holds the key, then the output is left to the janitor’s sweep', async () => {
    await redis.zadd(EXPIRY_INDEX, Date.now() - 1000, 'job:expired_best');
    const file = await output('expired_best');
    expect(await discardStaleOutput(redis, 'download', 'expired_best', [file])).toBe('left_to_sweep');
    expect(existsSync(file)).toBe(true);
  });

  it('when another deletion holds the tombstone, then it waits for its release and removes the output after, instead of giving up', async () => {
    const file = await output('held_best');
    const token = lockToken();
    await redis.set(sweepingKey('job:held_best'), token, 'PX', 60_000);
    // Redis knows the script (EVALSHA), and the tombstone is there before the call: its first
    // try, sent at once on this connection before the release, is answered busy.
    await discardStaleOutput(redis, 'download', 'warm_best', []);
    const discard = discardStaleOutput(redis, 'download', 'held_best', [file]);
    await releaseIfOwner(redis, sweepingKey('job:held_best'), token);
    expect(await discard).toBe('removed');
    expect(existsSync(file)).toBe(false);
  });
});
