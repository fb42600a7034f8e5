import { existsSync } from 'node:fs';
import { mkdir, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  JobStore,
  createRedis,
  janitorRemovedEvent,
  retainUpload,
  type Config,
  type NatsConnection,
  type Redis,
  type Storage,
} from '@media-jobs/libs';
import { startPlatform, waitUntil, type Platform } from '@media-jobs/libs/testing';
import { startJanitor, type Janitor } from '../src/janitor.js';
import { HOUR, captureLogger, collect, normalizeIdFor, storageOf, writeData } from './helpers.js';

let platform: Platform;
let config: Config;
let redis: Redis;
let storage: Storage;
let janitor: Janitor;
let events: { nc: NatsConnection; events: unknown[] };

beforeAll(async () => {
  platform = await startPlatform();
  // TTL 1 h; jobs may run up to 2 h, so tmp/ entries go after 2 h.
  config = platform.config({
    CACHE_TTL_HOURS: '1',
    DOWNLOAD_TIMEOUT_SECONDS: '7200',
    NORMALIZE_TIMEOUT_SECONDS: '600',
  });
  redis = createRedis(config);
  storage = storageOf(config);
  janitor = await startJanitor(config, captureLogger('info').logger);
  events = await collect(config, 'events.janitor.removed');
});
afterAll(async () => {
  await janitor?.stop();
  await events?.nc.close();
  redis?.disconnect();
  await platform?.close();
});

describe('orphan pass', () => {
  it('when files have no record, no index entry and no upload reference and are older than the TTL, then they go with reason orphan', async () => {
    const store = new JobStore({ redis, ttlMs: config.cacheTtlMs });
    const used = normalizeIdFor('used-upload', 'mono');
    const lost = normalizeIdFor('lost-upload', 'mono');
    await store.claim('download', 'alive_best', {});
    await store.claim('normalize', used.id, {});
    await retainUpload(redis, used.id);
    const gone = [
      await writeData(join(storage.downloads, 'lost_best.mp4'), 100, 2 * HOUR),
      await writeData(join(storage.normalized, `${lost.id}.wav`), 200, 2 * HOUR),
      await writeData(join(storage.uploads, `${lost.sha256}.wav`), 300, 2 * HOUR),
      await writeData(join(storage.downloads, 'not-a-job.tar.gz'), 400, 2 * HOUR),
    ];
    const kept = [
      await writeData(join(storage.downloads, 'young_best.mp4'), 10, 0.5 * HOUR),
      await writeData(join(storage.downloads, 'alive_best.mp4'), 10, 2 * HOUR),
      await writeData(join(storage.normalized, `${used.id}.wav`), 10, 2 * HOUR),
      await writeData(join(storage.uploads, `${used.sha256}.wav`), 10, 2 * HOUR),
    ];
    const summary = await janitor.sweepNow('admin');
    expect(summary).toMatchObject({
      removed: { download: 0, normalize: 0, orphan: 4 },
      files_removed: 4,
      bytes_freed: 1000,
    });
    expect(gone.filter((f) => existsSync(f))).toEqual([]);
    expect(kept.filter((f) => !existsSync(f))).toEqual([]);
    await waitUntil('4 removed events', () => events.events.length >= 4);
    const removed = events.events.map((e) => janitorRemovedEvent.parse(e));
    expect(removed.every((e) => e.reason === 'orphan')).toBe(true);
    expect(removed.find((e) => e.job_id === 'lost_best')).toMatchObject({
      kind: 'download',
      key: 'job:lost_best',
      files: ['downloads/lost_best.mp4'],
      bytes_freed: 100,
    });
    expect(removed.find((e) => e.files[0] === `uploads/${lost.sha256}.wav`)).toMatchObject({
      kind: null,
      key: null,
      bytes_freed: 300,
    });
    expect(await redis.keys('sweeping:*')).toEqual([]);
  });

  it('when tmp/ holds work folders older than the longest job and the TTL, then they go and younger ones stay', async () => {
    const stale = join(storage.tmp, 'stale_best.0a1b2c3d');
    const running = join(storage.tmp, 'running_best.4e5f6a7b');
    await writeData(join(stale, 'part.mp4'), 500);
    await writeData(join(running, 'part.mp4'), 50);
    const age = async (dir: string, ms: number) => {
      const t = new Date(Date.now() - ms);
      await utimes(dir, t, t);
    };
    await age(stale, 2.5 * HOUR);
    await age(running, 1.5 * HOUR); // past the TTL, but a download may still be running
    await mkdir(storage.tmp, { recursive: true });
    const summary = await janitor.sweepNow('admin');
    expect(summary).toMatchObject({ removed: { orphan: 1 }, bytes_freed: 500 });
    expect([existsSync(stale), existsSync(running)]).toEqual([false, true]);
  });
});
