import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  EXPIRY_INDEX,
  JobStore,
  createRedis,
  createStorage,
  ensureStorage,
  type Redis,
  type Storage,
} from '@media-jobs/libs';
import { startRedis, tempDataDir, type TestServer } from '@media-jobs/libs/testing';
import { scanRecords } from '../record-scan.js';

/** The chaos run's final check finds each kind of offender it defines, and nothing in a clean state. */

let server: TestServer;
let redis: Redis;
let data: { dir: string; remove(): Promise<void> };
let storage: Storage;
let store: JobStore;

const SHA = 'ab'.repeat(32);

beforeAll(async () => {
  server = await startRedis();
  redis = createRedis({ redisUrl: server.url });
  store = new JobStore({ redis, ttlMs: 3_600_000 });
});
afterAll(async () => {
  redis?.disconnect();
  await data?.remove();
  await server?.close();
});
beforeEach(async () => {
  await redis.flushall();
  await data?.remove();
  data = await tempDataDir();
  storage = createStorage(data.dir);
  await ensureStorage(storage);
});

/** A job taken to `completed` with its result file in place (or not). */
async function completed(kind: 'download' | 'normalize', id: string, withFile = true): Promise<void> {
  const { job } = await store.claim(kind, id, {});
  const file = `${id}.${kind === 'download' ? 'mp4' : 'opus'}`;
  await store.update(job, { status: 'completed', progress: 100, result: { file } });
  if (withFile)
    await writeFile(join(kind === 'download' ? storage.downloads : storage.normalized, file), 'x');
}

describe('scanRecords', () => {
  it('when every record is finished and every file has its record, then nothing is stuck or orphaned', async () => {
    await completed('download', 'clean_best');
    await completed('normalize', `${SHA.slice(0, 16)}_norm`);
    await writeFile(join(storage.uploads, `${SHA}.wav`), 'x');
    const failed = await store.claim('download', 'broken_best', {});
    await store.update(failed.job, { status: 'failed', error: { code: 'x', message: 'x' } });
    // An index entry whose expiry has passed awaits the janitor: not an orphan.
    await redis.zadd(EXPIRY_INDEX, Date.now() - 1000, 'job:expired_best');

    const scan = await scanRecords(redis, storage);
    expect(scan.offenders).toEqual([]);
    expect(scan).toMatchObject({ records: 3, files: 3 });
  });

  it('when a job is queued or processing, then it is stuck', async () => {
    await store.claim('download', 'waiting_best', {});
    const running = await store.claim('download', 'running_best', {});
    await store.update(running.job, { status: 'processing' });
    const scan = await scanRecords(redis, storage);
    expect(scan.offenders.map((o) => [o.what, o.subject]).sort()).toEqual([
      ['stuck', 'job:running_best'],
      ['stuck', 'job:waiting_best'],
    ]);
  });

  it('when a completed record lacks its file, a live index entry its record, or a file any record, then each is orphaned', async () => {
    await completed('download', 'nofile_best', false);
    await redis.zadd(EXPIRY_INDEX, Date.now() + 60_000, 'job:ghost_best');
    await writeFile(join(storage.downloads, 'stray_best.mp4'), 'x');
    await writeFile(join(storage.normalized, 'cdcdcdcdcdcdcdcd_norm.opus'), 'x');
    await writeFile(join(storage.uploads, `${'ef'.repeat(32)}.wav`), 'x');
    await redis.set('audio_job:junk', 'not json');
    await mkdir(join(storage.tmp, 'ignored'), { recursive: true });

    const scan = await scanRecords(redis, storage);
    expect(scan.offenders.every((o) => o.what === 'orphaned')).toBe(true);
    expect(scan.offenders.map((o) => o.subject).sort()).toEqual(
      [
        'audio_job:junk',
        'job:nofile_best',
        `${EXPIRY_INDEX} job:ghost_best`,
        join(storage.downloads, 'stray_best.mp4'),
        join(storage.normalized, 'cdcdcdcdcdcdcdcd_norm.opus'),
        join(storage.uploads, `${'ef'.repeat(32)}.wav`),
      ].sort(),
    );
  });
});
