import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import {
  ffprobe,
  spawnService,
  startPlatform,
  waitUntil,
  type Platform,
  type ServiceProcess,
} from '@media-jobs/libs/testing';
import { startNormalizeWorker, type NormalizeWorker } from '../src/worker.js';
import { makeAudio, submitter, type Submitter } from './helpers.js';

let platform: Platform;
let redis: Redis;
let nc: NatsConnection;
let jobs: Submitter;
let fixtures: string;
let longInput: string;
const services: ServiceProcess[] = [];
const workers: NormalizeWorker[] = [];

beforeAll(async () => {
  platform = await startPlatform();
  redis = new Redis(platform.redis.url);
  nc = await connect({ servers: platform.nats.url });
  jobs = submitter(nc, redis, platform.dataDir);
  fixtures = await mkdtemp(join(tmpdir(), 'mj-norm-kill-'));
  // Long enough that denoising it takes several seconds on a busy machine.
  longInput = await makeAudio(
    join(fixtures, 'long.wav'),
    ['anoisesrc=color=pink:amplitude=0.2:sample_rate=48000:duration=150:seed=5'],
    '[0]pan=stereo|c0=c0|c1=c0[out]',
  );
});

afterAll(async () => {
  for (const s of services) await s.stop('SIGKILL');
  for (const w of workers) await w.stop();
  redis?.disconnect();
  await nc?.close();
  await platform?.close();
  if (fixtures) await rm(fixtures, { recursive: true, force: true });
});

/** Pids of the direct children of a process (the ffmpeg runs of a worker). */
function childPids(pid: number): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)])
      .toString()
      .split('\n')
      .map(Number)
      .filter(Boolean);
  } catch {
    return []; // ps exits 1 when there are none
  }
}

/** ffmpeg processes this test process started (through an in-process worker) that still run. */
function ffmpegChildren(): number[] {
  return childPids(process.pid).filter((pid) => {
    try {
      return execFileSync('ps', ['-o', 'comm=', '-p', String(pid)])
        .toString()
        .includes('ffmpeg');
    } catch {
      return false;
    }
  });
}

describe('normalize worker failures', () => {
  it('when the worker is killed mid-job, then the job is delivered again and completes', async () => {
    const env = platform.env({ JOB_ACK_WAIT_SECONDS: '2', LOG_LEVEL: 'info' });
    const first = spawnService('normalize-worker', env);
    services.push(first);
    await first.waitFor(/Normalize worker ready/);
    const record = await jobs.submit(longInput, ['remove_noise', 'normalize_volume']);
    await waitUntil(`job ${record.id} to make progress`, async () => {
      const job = await jobs.store.get('normalize', record.id);
      return job?.record.status === 'processing' && job.record.progress > 0;
    });
    const orphans = childPids(first.child.pid ?? 0);
    await first.stop('SIGKILL');
    // A dead container takes its ffmpeg runs with it.
    for (const pid of orphans) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    expect((await jobs.store.get('normalize', record.id))?.record.status).toBe('processing');

    const second = spawnService('normalize-worker', env);
    services.push(second);
    const done = await jobs.waitFor(record.id, 'completed', 80_000);
    expect(done.attempts).toBe(2);
    const probe = await ffprobe(join(platform.dataDir, 'normalized', String(done.result?.file)));
    expect(Number(probe.format.duration)).toBeGreaterThan(149);
    // Only the killed run's folder remains for the janitor; the completed run cleaned up after itself.
    const left = await readdir(join(platform.dataDir, 'tmp'));
    expect(left.length).toBeLessThanOrEqual(1);
    for (const name of left) expect(name.startsWith(`${record.id}.`)).toBe(true);
    await second.stop();
  }, 90_000);

  it('when the worker shuts down mid-job past its grace period, then ffmpeg is stopped and the job is handed back', async () => {
    const worker = await startNormalizeWorker(platform.config({ SHUTDOWN_GRACE_SECONDS: '0.2' }));
    const record = await jobs.submit(longInput, ['remove_noise', 'convert_to_mono']);
    await waitUntil(`job ${record.id} to make progress`, async () => {
      const job = await jobs.store.get('normalize', record.id);
      return job?.record.status === 'processing' && job.record.progress > 0;
    });
    await worker.stop();
    expect(ffmpegChildren()).toEqual([]);
    const job = await jobs.store.get('normalize', record.id);
    expect(job?.record).toMatchObject({ status: 'queued', progress: 0 });
    // Another worker takes it over from the queue.
    const next = await startNormalizeWorker(platform.config());
    workers.push(next);
    expect((await jobs.waitFor(record.id, 'completed', 60_000)).attempts).toBe(2);
    await next.stop();
  }, 80_000);

  it('when a job outlasts NORMALIZE_TIMEOUT_SECONDS, then ffmpeg is killed, the job fails and tmp is clean', async () => {
    await rm(join(platform.dataDir, 'tmp'), { recursive: true, force: true });
    const worker = await startNormalizeWorker(platform.config({ NORMALIZE_TIMEOUT_SECONDS: '1' }));
    workers.push(worker);
    const record = await jobs.submit(longInput, ['remove_noise', 'highpass_filter']);
    const failed = await jobs.waitFor(record.id, 'failed', 30_000);
    expect(failed.error?.code).toBe('normalize.timeout');
    const ffmpegs = childPids(process.pid).filter((pid) => {
      try {
        return execFileSync('ps', ['-o', 'comm=', '-p', String(pid)])
          .toString()
          .includes('ffmpeg');
      } catch {
        return false;
      }
    });
    expect(ffmpegs).toEqual([]);
    expect(await readdir(join(platform.dataDir, 'tmp'))).toEqual([]);
    await worker.stop();
  });
});
