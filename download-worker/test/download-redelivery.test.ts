import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeHls, spawnService, waitUntilJobSettled, type ServiceProcess } from '@media-jobs/libs/testing';
import { startDownloadWorker, type DownloadWorker } from '../src/worker.js';
import { startTestBed, type TestBed } from './test-bed.js';

let bed: TestBed;
const workers: DownloadWorker[] = [];
let spawned: ServiceProcess | undefined;

// Short ack wait, so a redelivery (wanted or not) happens within the test.
const ACK_WAIT = { JOB_ACK_WAIT_SECONDS: '2' };

beforeAll(async () => {
  bed = await startTestBed();
  bed.fixtures.mount('hls', await makeHls([1080, 720, 360]));
});

afterEach(async () => {
  bed.fixtures.throttle(0);
  await spawned?.stop('SIGKILL');
  await Promise.all(workers.splice(0).map((w) => w.stop()));
});

afterAll(async () => {
  await bed?.close();
});

/** Command lines of live processes that mention this job's work folders. */
async function processesOf(jobId: string): Promise<string[]> {
  const { stdout } = await promisify(execFile)('ps', ['-eo', 'args']);
  return stdout.split('\n').filter((l) => l.includes(`/tmp/${jobId}.`));
}

describe('redelivery', () => {
  it('when a worker is killed with SIGKILL mid-download, then the job is delivered again to another worker and completes', async () => {
    bed.fixtures.throttle(100_000);
    spawned = spawnService('download-worker', bed.platform.env({ ...ACK_WAIT, LOG_LEVEL: 'info' }));
    await spawned.waitFor(/Download worker ready/);
    const { id, events } = await bed.submit(`${bed.fixtures.origin}/hls/master.m3u8?kill`, '360p');
    await expect.poll(() => bed.fixtures.count('/hls/360p/seg000.ts'), { timeout: 20_000 }).toBe(1);
    expect(await processesOf(id)).toHaveLength(1);
    await spawned.stop('SIGKILL');
    // The killed worker's yt-dlp must not outlive it (it dies on its next write to the closed pipe).
    await expect.poll(() => processesOf(id), { timeout: 5000 }).toEqual([]);

    bed.fixtures.throttle(0);
    workers.push(await startDownloadWorker(bed.platform.config(ACK_WAIT)));
    const record = await bed.waitFor(id, ['completed', 'failed'], 30_000);
    expect(record).toMatchObject({ status: 'completed', attempts: 2 });
    expect(events.flatMap((e) => (e.type === 'started' ? [e.attempt] : []))).toEqual([1, 2]);
    expect(await bed.files('downloads')).toEqual([record.result?.file]);
    // The second run removed the first one's partial files.
    expect(await bed.files('tmp')).toEqual([]);
  });

  it('when a worker gets SIGTERM mid-download, then it stops yt-dlp, hands the job back and exits 0', async () => {
    bed.fixtures.throttle(100_000);
    spawned = spawnService(
      'download-worker',
      bed.platform.env({ ...ACK_WAIT, SHUTDOWN_GRACE_SECONDS: '1', LOG_LEVEL: 'info' }),
    );
    await spawned.waitFor(/Download worker ready/);
    const { id } = await bed.submit(`${bed.fixtures.origin}/hls/master.m3u8?term`, '360p');
    await expect.poll(() => processesOf(id), { timeout: 20_000 }).toHaveLength(1);
    expect(await spawned.stop('SIGTERM')).toBe(0);
    expect(await processesOf(id)).toEqual([]);
    expect((await bed.store.get('download', id))?.record).toMatchObject({ status: 'queued', attempts: 1 });
    expect(await bed.files('tmp')).toEqual([]);

    bed.fixtures.throttle(0);
    workers.push(await startDownloadWorker(bed.platform.config(ACK_WAIT)));
    expect(await bed.waitFor(id, ['completed', 'failed'])).toMatchObject({
      status: 'completed',
      attempts: 2,
    });
  });

  it('when a download runs well past JOB_ACK_WAIT_SECONDS, then it is not delivered twice', async () => {
    workers.push(await startDownloadWorker(bed.platform.config(ACK_WAIT)));
    workers.push(await startDownloadWorker(bed.platform.config(ACK_WAIT)));
    // About 6 s for the 1 MB rendition: three ack waits.
    bed.fixtures.throttle(170_000);
    const before = bed.fixtures.requests.length;
    const { id, events } = await bed.submit(`${bed.fixtures.origin}/hls/master.m3u8?long`, '360p');
    const record = await bed.waitFor(id, ['completed', 'failed'], 40_000);
    expect(record).toMatchObject({ status: 'completed', attempts: 1 });
    expect(Date.parse(record.updated_at) - Date.parse(record.created_at)).toBeGreaterThan(3 * 2000);
    // No duplicate can come once the request is gone (acked) and both workers are idle (a
    // duplicate delivered before the ack has run to its end).
    await waitUntilJobSettled(bed.nc, 'download', id, {
      runners: workers,
      publishers: workers.map((w) => w.ctx.nc),
    });
    expect((await bed.store.get('download', id))?.record.attempts).toBe(1);
    expect(events.filter((e) => e.type === 'started')).toHaveLength(1);
    const segments = bed.fixtures.requests.slice(before).filter((p) => p.endsWith('.ts'));
    expect(segments).toEqual([
      '/hls/360p/seg000.ts',
      '/hls/360p/seg001.ts',
      '/hls/360p/seg002.ts',
      '/hls/360p/seg003.ts',
    ]);
  });
});
