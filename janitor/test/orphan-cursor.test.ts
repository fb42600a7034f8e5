import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  JobStore,
  NatsFileStore,
  connectNats,
  createRedis,
  janitorRemovedEvent,
  janitorSweepEvent,
  type Config,
  type NatsConnection,
  type Redis,
  type Storage,
} from '@media-jobs/libs';
import { startPlatform, waitUntil, type Platform } from '@media-jobs/libs/testing';
import { startJanitor, type Janitor } from '../src/janitor.js';
import { ORPHAN_CURSOR_KEY } from '../src/orphans.js';
import type { SweepSummary } from '../src/report.js';
import { HOUR, captureLogger, collect, normalizeIdFor, storageOf, storeAged, writeData } from './helpers.js';

// The orphan pass in slices: each sweep scans a bounded part of the buckets and the next
// sweep (of this janitor or another one) resumes from the cursor in Redis.

describe('orphan pass in slices (local folders)', () => {
  let platform: Platform;
  let config: Config;
  let redis: Redis;
  let storage: Storage;
  let events: { nc: NatsConnection; events: unknown[] };
  const janitors: Janitor[] = [];
  const options = { batchSize: 4, orphanBudget: { files: 8, ms: Number.POSITIVE_INFINITY } };

  beforeAll(async () => {
    platform = await startPlatform();
    config = platform.config({ CACHE_TTL_HOURS: '1' });
    redis = createRedis(config);
    storage = storageOf(config);
    events = await collect(config, 'events.janitor.sweep');
  });
  afterAll(async () => {
    for (const j of janitors) await j.stop();
    await events?.nc.close();
    redis?.disconnect();
    await platform?.close();
  });

  it('when the buckets hold more files than one slice, then sweeps resume where the last stopped (across a janitor restart), report how far they came, and remove every orphan but no live file', async () => {
    const store = new JobStore({ redis, ttlMs: config.cacheTtlMs });
    const orphans: string[] = [];
    const live: string[] = [];
    for (let i = 0; i < 10; i++)
      orphans.push(await writeData(join(storage.downloads, `orphan${i}_best.mp4`), 10, 2 * HOUR));
    for (let i = 0; i < 3; i++) {
      // Old files of live jobs: the claim finds their record and leaves them.
      await store.claim('download', `alive${i}_best`, {});
      live.push(await writeData(join(storage.downloads, `alive${i}_best.mp4`), 10, 2 * HOUR));
    }
    for (let i = 0; i < 5; i++)
      live.push(await writeData(join(storage.downloads, `young${i}_best.mp4`), 10, 0.5 * HOUR));
    for (let i = 0; i < 4; i++) {
      const { id } = normalizeIdFor(`lost-${i}`, 'mono');
      orphans.push(await writeData(join(storage.normalized, `${id}.wav`), 10, 2 * HOUR));
    }
    for (let i = 0; i < 2; i++) {
      const { sha256 } = normalizeIdFor(`lost-upload-${i}`, 'mono');
      orphans.push(await writeData(join(storage.uploads, `${sha256}.wav`), 10, 2 * HOUR));
    }
    const total = orphans.length + live.length; // 24 files; 8 per sweep

    // Sweep 1: the start-up sweep of the first janitor scans 8 files of downloads/.
    janitors.push(await startJanitor(config, captureLogger('info').logger, options));
    const first = JSON.parse((await redis.get('janitor:last_sweep')) as string) as SweepSummary;
    expect(first.orphans).toMatchObject({
      scanned: 8,
      position: 8,
      total_estimate: null,
      progress: null,
      complete_passes: 0,
      pass_completed: false,
      bucket: 'downloads',
    });
    expect(JSON.parse((await redis.get(ORPHAN_CURSOR_KEY)) as string)).toMatchObject({ position: 8 });

    // The janitor goes; another one resumes the pass from the cursor in Redis (sweep 2).
    await janitors[0]?.stop();
    const capture = captureLogger('info');
    const second = await startJanitor(config, capture.logger, options);
    janitors.push(second);
    const lines = capture.lines().map((l) => l.msg);
    expect(lines.find((l) => l.startsWith('Cleanup:'))).toMatch(
      /; orphan scan: 8 files, pass 1 at 16 files$/,
    );

    // Sweep 3 ends the last bucket's files; sweep 4 finds its end and completes the pass.
    const third = await second.sweepNow('admin');
    expect(third.orphans).toMatchObject({
      scanned: 8,
      position: 24,
      bucket: 'uploads',
      pass_completed: false,
    });
    const fourth = await second.sweepNow('admin');
    expect(fourth.orphans).toMatchObject({
      scanned: 0,
      position: 0,
      total_estimate: total,
      progress: 1,
      complete_passes: 1,
      pass_completed: true,
      bucket: 'downloads',
    });
    // Within ceil(24 / 8) + 1 = 4 sweeps every orphan went, every live file stayed.
    expect(orphans.filter((f) => existsSync(f))).toEqual([]);
    expect(live.filter((f) => !existsSync(f))).toEqual([]);

    // The next pass starts over and measures itself against the last one.
    const fifth = await second.sweepNow('admin');
    expect(fifth.orphans).toMatchObject({
      scanned: 8,
      position: 8,
      complete_passes: 1,
      pass_completed: false,
    });
    expect(fifth.orphans?.progress).toBeCloseTo(8 / total, 2);

    // Every sweep event carries the progress, valid against the published schema.
    await waitUntil('5 sweep events', () => events.events.length >= 5);
    const parsed = events.events.map((e) => janitorSweepEvent.parse(e));
    expect(parsed.map((e) => e.orphans?.scanned)).toEqual([8, 8, 8, 0, 8]);
    expect(parsed.map((e) => e.orphans?.complete_passes)).toEqual([0, 0, 0, 1, 1]);
  });
});

describe('orphan pass in slices (STORAGE=nats)', () => {
  let platform: Platform;
  let config: Config;
  let redis: Redis;
  let janitor: Janitor | undefined;

  beforeAll(async () => {
    platform = await startPlatform();
    config = platform.config({ CACHE_TTL_HOURS: '1', STORAGE: 'nats' });
    redis = createRedis(config);
  });
  afterAll(async () => {
    await janitor?.stop();
    redis?.disconnect();
    await platform?.close();
  });

  it('when a bucket holds more objects than one slice, then the pass resumes by stream sequence and removes every orphan object', async () => {
    const nc = await connectNats(config, 'test-objects');
    const files = new NatsFileStore(nc);
    await files.ensure();
    const tmp = join(platform.dataDir, 'staging');
    await mkdir(tmp, { recursive: true });
    const names = Array.from({ length: 10 }, (_, i) => `gone${i}_best.mp4`);
    for (const name of names) {
      await writeFile(join(tmp, name), 'x');
      await files.put('downloads', name, join(tmp, name));
    }
    // The objects were just put: the sweep's clock runs 2 h ahead so they are past the TTL.
    const options = {
      batchSize: 2,
      orphanBudget: { files: 4, ms: Number.POSITIVE_INFINITY },
      now: () => Date.now() + 2 * HOUR,
    };
    janitor = await startJanitor(config, captureLogger('info').logger, options);
    const summaries: SweepSummary[] = [];
    for (let i = 0; i < 4 && !summaries.at(-1)?.orphans?.pass_completed; i++)
      summaries.push(await janitor.sweepNow('admin'));
    // Sweep 1 (start-up) and sweeps 2, 3 of 4 objects each, and the rest until the pass is done.
    expect(summaries.at(-1)?.orphans).toMatchObject({
      pass_completed: true,
      complete_passes: 1,
      total_estimate: 10,
    });
    const left = await Promise.all(names.map((n) => files.stat('downloads', n)));
    expect(left.filter((f) => f !== null)).toEqual([]);
    await nc.close();
  });
});

describe('expired jobs found by name when many files are stored', () => {
  let platform: Platform;
  let config: Config;
  let redis: Redis;
  let storage: Storage;
  let janitor: Janitor | undefined;
  let removed: { nc: NatsConnection; events: unknown[] };

  beforeAll(async () => {
    platform = await startPlatform();
    config = platform.config({ CACHE_TTL_HOURS: '1' });
    redis = createRedis(config);
    storage = storageOf(config);
    removed = await collect(config, 'events.janitor.removed');
  });
  afterAll(async () => {
    await janitor?.stop();
    await removed?.nc.close();
    redis?.disconnect();
    await platform?.close();
  });

  it('when a complete orphan pass saw the extensions, then expired results are found by name, and one with an unseen extension goes as an orphan in the same sweep', async () => {
    const kept = await writeData(join(storage.downloads, 'young_best.mp4'), 10, 0.5 * HOUR);
    // The start-up sweep's orphan pass sees `mp4` in downloads/ and completes.
    janitor = await startJanitor(config, captureLogger('info').logger, { probeAboveFiles: 0 });
    const aged = storeAged(redis, config, 2 * HOUR);
    await aged.claim('download', 'exp1_best', {});
    await aged.claim('download', 'exp2_best', {});
    const seen = await writeData(join(storage.downloads, 'exp1_best.mp4'), 100, 2 * HOUR);
    const unseen = await writeData(join(storage.downloads, 'exp2_best.mkv'), 200, 2 * HOUR);
    const summary = await janitor.sweepNow('admin');
    expect(summary).toMatchObject({
      removed: { download: 2, orphan: 1 },
      files_removed: 2,
      bytes_freed: 300,
    });
    expect([existsSync(seen), existsSync(unseen), existsSync(kept)]).toEqual([false, false, true]);
    await waitUntil('3 removed events', () => removed.events.length >= 3);
    const byFile = new Map(
      removed.events
        .map((e) => janitorRemovedEvent.parse(e))
        .flatMap((e) => e.files.map((f) => [f, e.reason])),
    );
    expect(byFile.get('downloads/exp1_best.mp4')).toBe('expired');
    expect(byFile.get('downloads/exp2_best.mkv')).toBe('orphan');
  });
});
