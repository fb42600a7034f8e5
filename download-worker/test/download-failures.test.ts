import { dirname } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeHls, makeMp4, waitUntilJobSettled } from '@media-jobs/libs/testing';
import { startDownloadWorker, type DownloadWorker } from '../src/worker.js';
import { startTestBed, type TestBed } from './test-bed.js';

let bed: TestBed;
let worker: DownloadWorker | undefined;

beforeAll(async () => {
  bed = await startTestBed();
  const [hls, mp4] = await Promise.all([
    makeHls([1080, 720, 360]),
    makeMp4({ width: 640, height: 360, seconds: 3 }),
  ]);
  bed.fixtures.mount('hls', hls);
  bed.fixtures.mount('mp4', dirname(mp4));
});

afterEach(async () => {
  bed.fixtures.throttle(0);
  await worker?.stop();
  worker = undefined;
});

afterAll(async () => {
  await bed?.close();
});

/** A worker with its own limits; the tests of this file run one after another on the same consumer. */
async function startWorker(env: Record<string, string> = {}): Promise<void> {
  worker = await startDownloadWorker(bed.platform.config(env));
}

async function expectNoPartialFiles(): Promise<void> {
  expect(await bed.files('tmp')).toEqual([]);
  expect(await bed.files('downloads')).toEqual([]);
}

describe('download failures', () => {
  it('when the URL answers 404, then the job fails with a clear message after exactly one attempt', async () => {
    await startWorker();
    const { id, events } = await bed.submit(`${bed.fixtures.origin}/mp4/missing.mp4`, 'best');
    const record = await bed.waitFor(id, ['failed']);
    expect(record.error?.code).toBe('source.unavailable');
    expect(record.error?.message).toMatch(/HTTP Error 404: Not Found/);
    expect(record.error?.message).not.toMatch(/please report/);
    // A retry would keep the request in JOBS: once it is gone and the worker idle, none can come.
    await waitUntilJobSettled(bed.nc, 'download', id, { runners: [worker!], publishers: [worker!.ctx.nc] });
    expect((await bed.store.get('download', id))?.record).toMatchObject({ status: 'failed', attempts: 1 });
    expect(events.filter((e) => e.type === 'started')).toHaveLength(1);
    expect(events.filter((e) => e.type === 'failed')).toHaveLength(1);
    expect(bed.fixtures.count('/mp4/missing.mp4')).toBe(1);
  });

  it('when a plain file is over MAX_DOWNLOAD_MB, then it fails as too large at once, with nothing left behind', async () => {
    await startWorker({ MAX_DOWNLOAD_MB: '0.05' });
    const { id } = await bed.submit(`${bed.fixtures.origin}/mp4/video.mp4`, 'best');
    const record = await bed.waitFor(id, ['failed']);
    expect(record.error?.code).toBe('limits.size');
    expect(record.error?.message).toContain('0.05 MB');
    expect(record.attempts).toBe(1);
    await expectNoPartialFiles();
  });

  it('when an HLS download grows over MAX_DOWNLOAD_MB, then yt-dlp is stopped and the job fails as too large', async () => {
    await startWorker({ MAX_DOWNLOAD_MB: '0.05' });
    const before = bed.fixtures.requests.length;
    // Slow enough that a download left running would reach the next segments.
    bed.fixtures.throttle(500_000);
    const { id } = await bed.submit(`${bed.fixtures.origin}/hls/master.m3u8`, '360p');
    const record = await bed.waitFor(id, ['failed', 'completed']);
    expect(record.error?.code).toBe('limits.size');
    expect(record.attempts).toBe(1);
    const served = bed.fixtures.requests.slice(before);
    expect(served).toContain('/hls/360p/seg000.ts');
    expect(served).not.toContain('/hls/360p/seg001.ts');
    await expectNoPartialFiles();
  });

  it('when a download outlasts DOWNLOAD_TIMEOUT_SECONDS, then the job fails as timed out and partial files are removed', async () => {
    // Room for yt-dlp to start and fetch a first segment on a loaded machine (it takes a few
    // seconds to start there), and still far from the 30 s the 1 MB rendition takes.
    await startWorker({ DOWNLOAD_TIMEOUT_SECONDS: '12' });
    bed.fixtures.throttle(30_000);
    const before = bed.fixtures.requests.length;
    const { id, events } = await bed.submit(`${bed.fixtures.origin}/hls/master.m3u8?slow`, '360p');
    const record = await bed.waitFor(id, ['failed', 'completed']);
    expect(record.error).toEqual({
      code: 'limits.time',
      message: expect.stringMatching(/longer than the 12 s limit/),
    });
    expect(record.attempts).toBe(1);
    expect(events.filter((e) => e.type === 'started')).toHaveLength(1);
    const served = bed.fixtures.requests.slice(before);
    expect(served).toContain('/hls/360p/seg000.ts');
    expect(served).not.toContain('/hls/360p/seg003.ts');
    await expectNoPartialFiles();
  });
});
