import { join } from 'node:path';
import { readFile, readdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NO_RATE_LIMITS,
  makeMp4,
  makeTone,
  postDownload,
  spawnService,
  startFixtureServer,
  startPlatform,
  waitForJobs,
  waitUntil,
  type FixtureServer,
  type Platform,
  type ServiceProcess,
} from '@media-jobs/libs/testing';

let platform: Platform;
let fixtures: FixtureServer;
const services: ServiceProcess[] = [];

beforeAll(async () => {
  // Append-only file: the records written before the outage are there after it, as in production.
  platform = await startPlatform({ redis: { appendonly: true } });
  fixtures = await startFixtureServer();
  fixtures.mount('mp4', join(await makeMp4({ width: 320, height: 180, seconds: 1 }), '..'));
}, 120_000);

afterAll(async () => {
  await Promise.all(services.map((s) => s.stop('SIGKILL')));
  await fixtures?.close();
  await platform?.close();
});

const env = () =>
  platform.env({
    LOG_LEVEL: 'info',
    JOB_ACK_WAIT_SECONDS: '3',
    DOWNLOAD_CONCURRENCY: '4',
    SHUTDOWN_GRACE_SECONDS: '3',
    ...NO_RATE_LIMITS,
  });

/** Runs a service as its own process, so a crash shows as an exit rather than a test error. */
function spawn(service: string, overrides: Record<string, string> = {}): ServiceProcess {
  const proc = spawnService(service, { ...env(), ...overrides });
  services.push(proc);
  return proc;
}

/** How many lines of the process's output match. */
const linesOf = (proc: ServiceProcess, pattern: RegExp) =>
  proc
    .output()
    .split('\n')
    .filter((l) => pattern.test(l)).length;

/** A connection attempt that Redis refused (debug level). */
const REDIS_REFUSED = /"msg":"Redis error"/;

async function gatewayUrl(proc: ServiceProcess): Promise<string> {
  const line = await proc.waitFor(/Gateway listening/);
  const port = /"port":(\d+)/.exec(line)?.[1];
  return `http://127.0.0.1:${port}`;
}

async function timedReady(url: string): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  const res = await fetch(`${url}/ready`);
  await res.arrayBuffer();
  return { status: res.status, ms: performance.now() - started };
}

describe('Redis stopped and restarted', () => {
  it('when Redis goes away under submissions, then the gateway answers 503 with Retry-After at once, no process crashes, and every accepted job completes after Redis returns', async () => {
    const gateway = spawn('gateway');
    // The production default: per-client rate limits, counted in Redis.
    const limited = spawn('gateway', { RATE_LIMIT_PER_MINUTE: '60', RATE_LIMIT_READS_PER_MINUTE: '600' });
    const worker = spawn('download-worker');
    const normalizer = spawn('normalize-worker');
    // Sweeps every ~1 s, so some fall inside the outage.
    const janitor = spawn('janitor', { CLEANUP_INTERVAL_MINUTES: '0.02' });
    const url = await gatewayUrl(gateway);
    const limitedUrl = await gatewayUrl(limited);
    await worker.waitFor(/Download worker ready/);
    await normalizer.waitFor(/Normalize worker ready/);
    await janitor.waitFor(/Janitor started/);
    const videoUrl = (n: number) => `${fixtures.origin}/mp4/video.mp4?redis=${n}`;

    // About a second per download: some jobs are running, some queued, when Redis stops.
    fixtures.throttle(60_000);
    const accepted: string[] = [];
    for (let i = 0; i < 8; i++) {
      const res = await postDownload(url, videoUrl(i));
      expect(res.status).toBe(202);
      accepted.push(res.id!);
    }
    // The limited gateway's first request compiles its whole submit path (body, validation,
    // URL rules): made now, so the timing below is of the outage, not of a cold process.
    const warm = await postDownload(limitedUrl, videoUrl(98));
    expect(warm.status).toBe(202);
    accepted.push(warm.id!);
    await platform.redis.stop();

    for (let i = 8; i < 18; i++) {
      const res = await postDownload(url, videoUrl(i));
      expect(res).toMatchObject({ status: 503, retryAfter: expect.stringMatching(/^\d+$/) });
      expect(res.ms).toBeLessThan(500);
    }
    // With rate limits on, the limiter's Redis call fails first: the answer is the same.
    const viaLimiter = await postDownload(limitedUrl, videoUrl(99));
    expect(viaLimiter).toMatchObject({ status: 503, retryAfter: expect.stringMatching(/^\d+$/) });
    expect(viaLimiter.ms).toBeLessThan(500);
    // Reads fail the same way, not with a 500 or a hang.
    const lookup = await fetch(`${url}/jobs/${accepted[0]}`);
    expect(lookup.status).toBe(503);
    const down = await timedReady(url);
    expect(down.status).toBe(503);
    expect(down.ms).toBeLessThan(500);
    // Down long enough that every service has met the outage, not just one blip: each has
    // lost its connection, and a janitor sweep failed on it.
    const all = [gateway, limited, worker, normalizer, janitor];
    await waitUntil(
      'every service to see Redis go away and a sweep to fail',
      () =>
        all.every((p) => linesOf(p, /Redis connection lost/) > 0) &&
        linesOf(janitor, /"msg":"Sweep failed"/) > 0,
    );

    await platform.redis.start();
    await expect
      .poll(async () => (await timedReady(url)).status, { timeout: 15_000, interval: 200 })
      .toBe(200);
    fixtures.throttle(0);
    for (let i = 8; i < 14; i++) {
      const res = await postDownload(url, videoUrl(i));
      expect(res.status).toBe(202);
      accepted.push(res.id!);
    }

    // The normalize worker and the janitor came through it too: an upload is processed, and
    // the janitor sweeps again.
    const tone = join(platform.dataDir, 'tone.wav');
    await makeTone(tone);
    const form = new FormData();
    form.append('operations[]', 'normalize_volume');
    form.append('file', new Blob([new Uint8Array(await readFile(tone))], { type: 'audio/wav' }), 'tone.wav');
    const upload = await fetch(`${url}/normalize`, { method: 'POST', body: form });
    expect(upload.status).toBe(202);
    accepted.push(((await upload.json()) as { id: string }).id);
    const sweeps = () => janitor.output().split('Cleanup: removed').length - 1;
    const sweepsBefore = sweeps();
    await expect.poll(sweeps, { timeout: 15_000, interval: 200 }).toBeGreaterThan(sweepsBefore);

    const done = await waitForJobs(url, accepted, 60_000);
    expect([...done.values()].map((r) => r?.status)).toEqual(accepted.map(() => 'completed'));
    expect(await readdir(join(platform.dataDir, 'downloads'))).toHaveLength(accepted.length - 1);
    for (const proc of [gateway, limited, worker, normalizer, janitor])
      expect(proc.child.exitCode).toBeNull();
    for (const proc of [gateway, limited, worker, normalizer, janitor]) expect(await proc.stop()).toBe(0);
  }, 120_000);

  it('when a service starts before Redis answers, then it waits and becomes ready once Redis is up', async () => {
    await platform.redis.stop();
    const gateway = spawn('gateway', { LOG_LEVEL: 'debug' });
    // Two refused connections: it tried, and it is still there, trying again.
    await waitUntil('the gateway to retry Redis', () => linesOf(gateway, REDIS_REFUSED) >= 2);
    expect(gateway.child.exitCode).toBeNull();
    await platform.redis.start();
    const url = await gatewayUrl(gateway);
    expect((await timedReady(url)).status).toBe(200);
    expect(await gateway.stop()).toBe(0);
  });

  it('when a service gets SIGTERM while it waits for Redis at start, then it exits 0 once it is up, not killed half-way', async () => {
    await platform.redis.stop();
    const worker = spawn('download-worker', { LOG_LEVEL: 'debug' });
    await waitUntil('the worker to wait for Redis', () => linesOf(worker, REDIS_REFUSED) > 0);
    worker.child.kill('SIGTERM');
    await worker.waitFor(/"msg":"Shutting down"/);
    // It took the signal and still waits: a refused connection after it says it is alive.
    const refusedBefore = linesOf(worker, REDIS_REFUSED);
    await waitUntil('the worker to try Redis again', () => linesOf(worker, REDIS_REFUSED) > refusedBefore);
    expect(worker.child.exitCode).toBeNull();
    // No second signal: a second SIGTERM ends a process at once, as Ctrl-C twice does.
    const exited = new Promise<number | null>((resolve) => worker.child.once('exit', resolve));
    await platform.redis.start();
    expect(await exited).toBe(0);
    expect(worker.output()).toMatch(/"msg":"Stopped"/);
  });
});
