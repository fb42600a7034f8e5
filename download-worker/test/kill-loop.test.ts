import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeMp4, spawnService, type ServiceProcess } from '@media-jobs/libs/testing';
import { sleep, startTestBed, type SubmittedJob, type TestBed } from './test-bed.js';

let bed: TestBed;
const live: ServiceProcess[] = [];

const KILLS = 20;
const JOBS = 12;
// Short ack wait: a killed worker's jobs go to the next worker within the loop. Deliveries
// are plenty, so no job runs out of them however often its worker dies.
const ENV = {
  JOB_ACK_WAIT_SECONDS: '2',
  JOB_MAX_DELIVER: '100',
  JOB_RETRY_DELAY_SECONDS: '1',
  DOWNLOAD_CONCURRENCY: '4',
  LOG_LEVEL: 'info',
};

beforeAll(async () => {
  bed = await startTestBed();
  bed.fixtures.mount('mp4', join(await makeMp4({ width: 320, height: 180, seconds: 2 }), '..'));
}, 120_000);

afterAll(async () => {
  await Promise.all(live.map((p) => p.stop('SIGKILL')));
  await bed?.close();
});

function spawnWorker(): ServiceProcess {
  const proc = spawnService('download-worker', bed.platform.env(ENV));
  live.push(proc);
  return proc;
}

describe('worker killed again and again', () => {
  it(`when download workers are SIGKILLed mid-job ${KILLS} times in a row, then every job completes exactly once with one output file and no tmp leftovers`, async () => {
    // About 4 s per download: every kill lands while jobs are running, and few finish during
    // the loop, so every new worker finds work.
    bed.fixtures.throttle(45_000);
    const jobs: SubmittedJob[] = [];
    for (let i = 0; i < JOBS; i++)
      jobs.push(await bed.submit(`${bed.fixtures.origin}/mp4/video.mp4?kill=${i}`, '360p'));

    // Two workers overlap, so a new one is starting while the other works and gets killed.
    let next = spawnWorker();
    let killedMidJob = 0;
    for (let k = 0; k < KILLS; k++) {
      const current = next;
      next = spawnWorker();
      await current.waitFor(/Job started/, 20_000);
      await sleep(300 + Math.random() * 700);
      const running = current
        .output()
        .split('\n')
        .filter((l) => l.includes('Job started')).length;
      const finished = current
        .output()
        .split('\n')
        .filter((l) => l.includes('Job completed')).length;
      if (running > finished) killedMidJob++;
      await current.stop('SIGKILL');
    }
    expect(killedMidJob).toBe(KILLS);

    // The last worker runs unthrottled and is left alone to finish everything.
    bed.fixtures.throttle(0);
    const records = await Promise.all(jobs.map((j) => bed.waitFor(j.id, ['completed', 'failed'], 180_000)));
    expect(records.map((r) => r.status)).toEqual(jobs.map(() => 'completed'));
    for (const job of jobs) {
      expect(
        job.events.filter((e) => e.type === 'completed'),
        job.id,
      ).toHaveLength(1);
    }
    const started = jobs.flatMap((j) => j.events.filter((e) => e.type === 'started'));
    expect(started.length).toBeGreaterThan(JOBS);
    const files = (await bed.files('downloads')).sort();
    expect(files).toEqual(records.map((r) => String(r.result?.file)).sort());
    // Killed runs' partial files are removed by the run that takes the job over.
    await expect.poll(() => bed.files('tmp'), { timeout: 5000 }).toEqual([]);
    expect(await next.stop('SIGTERM')).toBe(0);
    // Twenty worker starts (each through tsx) and their jobs: about 70 s on a fresh, loaded
    // 2-core machine, where 60 s was not enough.
  }, 240_000);
});
