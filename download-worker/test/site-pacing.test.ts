import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  SITE_SLOTS_PREFIX,
  createRedis,
  siteOf,
  siteSlotsHeld,
  tryAcquireSiteSlot,
  type SiteSlot,
} from '@media-jobs/libs';
import { makeMp4, waitUntil } from '@media-jobs/libs/testing';
import { startDownloadWorker, type DownloadWorker } from '../src/worker.js';
import { startTestBed, type SubmittedJob, type TestBed } from './test-bed.js';

let bed: TestBed;
let workers: DownloadWorker[] = [];
let mp4Name: string;
let mp4Bytes: number;

beforeAll(async () => {
  bed = await startTestBed();
  const mp4 = await makeMp4({ width: 640, height: 360, seconds: 3 });
  mp4Name = basename(mp4);
  mp4Bytes = (await stat(mp4)).size;
  bed.fixtures.mount('mp4', dirname(mp4));
});

afterEach(async () => {
  bed.fixtures.throttle(0);
  await Promise.all(workers.map((w) => w.stop()));
  workers = [];
});

afterAll(async () => {
  await bed?.close();
});

/** Two workers, as on two hosts: each may run two downloads, so only the pacing keeps them apart. */
async function startWorkers(env: Record<string, string>): Promise<void> {
  const config = bed.platform.config({ DOWNLOAD_CONCURRENCY: '2', ...env });
  workers = await Promise.all([startDownloadWorker(config), startDownloadWorker(config)]);
}

async function submitMany(n: number, tag: string): Promise<SubmittedJob[]> {
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      bed.submit(`${bed.fixtures.origin}/mp4/${mp4Name}?${tag}=${i}`, 'best'),
    ),
  );
}

async function expectAllCompleted(jobs: SubmittedJob[]): Promise<void> {
  for (const job of jobs)
    expect((await bed.waitFor(job.id, ['completed', 'failed'], 90_000)).status).toBe('completed');
}

describe('per-site pacing', () => {
  it('when SITE_CONCURRENCY is 1, then two workers never download from one site at once, and waiting jobs say why', async () => {
    await startWorkers({ SITE_CONCURRENCY: '1' });
    // About a second per download, so that four of them would overlap without the limit.
    bed.fixtures.throttle(Math.ceil(mp4Bytes / 1));
    bed.fixtures.resetPeak();
    const jobs = await submitMany(4, 'limit');
    await expectAllCompleted(jobs);
    expect(bed.fixtures.peakActive).toBe(1);
    const stages = jobs.flatMap((j) =>
      j.events.flatMap((e) => (e.type === 'progress' && e.stage ? [e.stage] : [])),
    );
    expect(
      stages.some((s) =>
        /^waiting: 1 of 1 downloads from 127\.0\.0\.1 running \(SITE_CONCURRENCY\)$/.test(s),
      ),
    ).toBe(true);
    // Every slot was given back.
    expect(await siteSlotsHeld(bed.redis, '127.0.0.1')).toBe(0);
  });

  it('when SITE_CONCURRENCY is 0, then downloads from one site overlap', async () => {
    await startWorkers({ SITE_CONCURRENCY: '0' });
    bed.fixtures.throttle(Math.ceil(mp4Bytes / 1));
    bed.fixtures.resetPeak();
    const jobs = await submitMany(4, 'unlimited');
    await expectAllCompleted(jobs);
    expect(bed.fixtures.peakActive).toBeGreaterThan(1);
  });

  it('when SITE_MIN_GAP_SECONDS is set, then starts on one site are that far apart across workers', async () => {
    await startWorkers({ SITE_CONCURRENCY: '0', SITE_MIN_GAP_SECONDS: '3' });
    const before = bed.fixtures.seen.length;
    const jobs = await submitMany(3, 'gap');
    await expectAllCompleted(jobs);
    const firsts = new Map<string, number>();
    for (const r of bed.fixtures.seen.slice(before)) if (!firsts.has(r.query)) firsts.set(r.query, r.at);
    const starts = [...firsts.values()].sort((a, b) => a - b);
    expect(starts).toHaveLength(3);
    // The gap is between slot grants (Redis time); each yt-dlp takes up to a second to start and ask.
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(2000);
  });

  it('when the holder of a slot dies without giving it back, then its lease lapses and the slot is free again', async () => {
    const doomed = createRedis(bed.platform.config());
    const site = siteOf('https://www.example.org/v');
    expect(site).toBe('example.org');
    const first = await tryAcquireSiteSlot(doomed, {
      site,
      limit: 1,
      minGapMs: 0,
      leaseMs: 1500,
      holder: 'a',
    });
    expect(first.ok).toBe(true);
    // Killed: no more renewals, no release.
    doomed.disconnect();
    const busy = await tryAcquireSiteSlot(bed.redis, {
      site,
      limit: 1,
      minGapMs: 0,
      leaseMs: 1500,
      holder: 'b',
    });
    expect(busy).toMatchObject({ ok: false, reason: 'busy', held: 1 });
    let slot: SiteSlot | undefined;
    await waitUntil('the lapsed slot to be free', async () => {
      const attempt = await tryAcquireSiteSlot(bed.redis, {
        site,
        limit: 1,
        minGapMs: 0,
        leaseMs: 1500,
        holder: 'b',
      });
      if (attempt.ok) slot = attempt.slot;
      return attempt.ok;
    });
    // A held slot is renewed: it is still held after the end of its first lease.
    const [, firstEnd] = await bed.redis.zrange(`${SITE_SLOTS_PREFIX}${site}`, '0', '0', 'WITHSCORES');
    const redisNow = async () => {
      const [sec, micro] = await bed.redis.time();
      return Number(sec) * 1000 + Math.floor(Number(micro) / 1000);
    };
    await waitUntil(
      'Redis time to pass the end of the first lease',
      async () => (await redisNow()) > Number(firstEnd) + 200,
      {
        timeoutMs: 10_000,
        intervalMs: 100,
      },
    );
    expect(await siteSlotsHeld(bed.redis, site)).toBe(1);
    await slot!.release();
    expect(await siteSlotsHeld(bed.redis, site)).toBe(0);
  });
});
