import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  makeMp4,
  spawnService,
  waitUntil,
  waitUntilRequestGone,
  type ServiceProcess,
} from '@media-jobs/libs/testing';
import { startTestBed, type SubmittedJob, type TestBed } from './test-bed.js';

let bed: TestBed;
const live: ServiceProcess[] = [];

const KILLS = 10;
const JOBS = 8;
const CONCURRENCY = 2;
const ACK_WAIT_MS = 2000;
// Short ack wait: a killed worker's jobs go to the next worker within the loop. Deliveries
// are plenty, so no job runs out of them however often its worker dies. Two jobs per worker:
// each worker that starts takes jobs (the two live workers hold four, the last killed one's
// two wait out the ack wait, two are free), and few yt-dlp processes start per kill.
const ENV = {
  JOB_ACK_WAIT_SECONDS: String(ACK_WAIT_MS / 1000),
  JOB_MAX_DELIVER: '100',
  JOB_RETRY_DELAY_SECONDS: '1',
  DOWNLOAD_CONCURRENCY: String(CONCURRENCY),
  LOG_LEVEL: 'info',
};

// Budgets for a slow, shared 2-core machine, from the work: one kill is a worker start, a
// job taken (at worst after an ack wait) and, every other time, its transfer under way; the
// drain is the jobs in rounds of CONCURRENCY, each a yt-dlp run and a probe.
const KILL_BUDGET_MS = 20_000;
const JOB_BUDGET_MS = 20_000;
const DRAIN_BUDGET_MS = ACK_WAIT_MS + Math.ceil(JOBS / CONCURRENCY) * JOB_BUDGET_MS;

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

const count = (proc: ServiceProcess, msg: string) =>
  proc
    .output()
    .split('\n')
    .filter((l) => l.includes(`"msg":"${msg}"`)).length;

/** Resolves once this attempt of the job has moved bytes: yt-dlp is mid-transfer. */
async function transferring(job: SubmittedJob, attempt: number): Promise<void> {
  await waitUntil(
    `attempt ${attempt} of ${job.id} to transfer bytes`,
    () => {
      const start = job.events.findIndex((e) => e.type === 'started' && e.attempt === attempt);
      return (
        start >= 0 &&
        job.events
          .slice(start)
          .some((e) => e.type === 'progress' && e.stage === 'downloading' && e.progress > 0)
      );
    },
    { timeoutMs: KILL_BUDGET_MS },
  );
}

describe('worker killed again and again', () => {
  it(
    `when download workers are SIGKILLed mid-job ${KILLS} times in a row, then every job completes exactly once with one output file and no tmp leftovers`,
    async () => {
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
        const line = JSON.parse(await current.waitFor(/"msg":"Job started"/, KILL_BUDGET_MS)) as {
          job_id: string;
          attempt: number;
        };
        // Kills alternate between the moment a job is taken and the middle of its transfer.
        const job = jobs.find((j) => j.id === line.job_id);
        if (k % 2 === 1 && job) await transferring(job, line.attempt);
        if (count(current, 'Job started') > count(current, 'Job completed')) killedMidJob++;
        await current.stop('SIGKILL');
      }
      expect(killedMidJob).toBe(KILLS);

      // The last worker runs unthrottled and is left alone to finish everything.
      bed.fixtures.throttle(0);
      const records = await Promise.all(
        jobs.map((j) => bed.waitFor(j.id, ['completed', 'failed'], DRAIN_BUDGET_MS)),
      );
      expect(records.map((r) => r.status)).toEqual(jobs.map(() => 'completed'));
      // Acked requests are never delivered again: no run is left to complete a job twice.
      for (const job of jobs) await waitUntilRequestGone(bed.nc, 'download', job.id);
      for (const job of jobs) {
        const completed = () => job.events.filter((e) => e.type === 'completed');
        await waitUntil(`the completed event of ${job.id}`, () => completed().length > 0);
        expect(completed(), job.id).toHaveLength(1);
      }
      const started = jobs.flatMap((j) => j.events.filter((e) => e.type === 'started'));
      expect(started.length).toBeGreaterThan(JOBS);
      const files = (await bed.files('downloads')).sort();
      expect(files).toEqual(records.map((r) => String(r.result?.file)).sort());
      // Killed runs' partial files are removed by the run that takes the job over.
      await expect.poll(() => bed.files('tmp'), { timeout: JOB_BUDGET_MS }).toEqual([]);
      expect(await next.stop('SIGTERM')).toBe(0);
    },
    KILLS * KILL_BUDGET_MS + DRAIN_BUDGET_MS + JOB_BUDGET_MS,
  );
});
