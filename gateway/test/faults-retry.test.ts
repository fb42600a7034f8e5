import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NO_RATE_LIMITS,
  makeMp4,
  postDownload,
  spawnService,
  startFixtureServer,
  startPlatform,
  waitForJobs,
  type FixtureServer,
  type Platform,
  type ServiceProcess,
  waitUntil,
} from '@media-jobs/libs/testing';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { jobEventSchema, type JobEvent } from '@media-jobs/libs';
import { startDownloadWorker, type DownloadWorker } from '../../download-worker/src/worker.js';
import { startGateway, type Gateway } from '../src/gateway.js';

let platform: Platform;
let fixtures: FixtureServer;
let gateway: Gateway;
const workers: DownloadWorker[] = [];
let spawned: ServiceProcess | undefined;
let watcher: ServiceProcess | undefined;

const ENV = {
  JOB_MAX_DELIVER: '3',
  JOB_ACK_WAIT_SECONDS: '2',
  JOB_RETRY_DELAY_SECONDS: '1',
  ...NO_RATE_LIMITS,
};

beforeAll(async () => {
  // Append-only, so a Redis restart keeps the records.
  platform = await startPlatform({ redis: { appendonly: true } });
  fixtures = await startFixtureServer();
  fixtures.mount('mp4', join(await makeMp4({ width: 320, height: 180, seconds: 2 }), '..'));
  gateway = await startGateway(platform.config(ENV));
}, 120_000);

afterAll(async () => {
  await spawned?.stop('SIGKILL');
  await watcher?.stop('SIGKILL');
  await Promise.all(workers.map((w) => w.stop()));
  await gateway?.stop();
  await fixtures?.close();
  await platform?.close();
});

/**
 * SIGKILLs a worker that holds the job, then waits until the server has dropped its pull
 * requests: a killed worker's fetch for more jobs can stay open on the server for a moment,
 * and the next delivery of the job would go to it and be spent before the next worker runs.
 */
async function kill(proc: ServiceProcess): Promise<void> {
  await proc.stop('SIGKILL');
  const nc = await connect({ servers: platform.nats.url });
  try {
    const jsm = await jetstreamManager(nc);
    await waitUntil(
      'the killed worker to hold no pull request',
      async () => (await jsm.consumers.info('JOBS', 'download-worker')).num_waiting === 0,
    );
  } finally {
    await nc.close();
  }
}

describe('a job that keeps failing', () => {
  it('when every worker holding a job dies, then after max_deliver the job ends failed with the reason, not processing', async () => {
    // Each delivery goes to a worker that is killed as soon as it starts the job.
    fixtures.throttle(30_000);
    const { id } = await postDownload(gateway.url, `${fixtures.origin}/mp4/video.mp4?dies`);
    // A live worker joins during the last delivery: it never gets the job (there is no fourth
    // delivery) but receives JetStream's max-deliveries advisory and fails the job with the reason.
    for (let delivery = 1; delivery <= 3; delivery++) {
      spawned = spawnService('download-worker', platform.env({ ...ENV, LOG_LEVEL: 'info' }));
      await spawned.waitFor(/"msg":"Job started"/, 60_000);
      if (delivery < 3) {
        await kill(spawned);
      } else {
        workers.push(await startDownloadWorker(platform.config(ENV)));
        await spawned.stop('SIGKILL');
      }
    }
    const done = await waitForJobs(gateway.url, [id!], 30_000);
    expect(done.get(id!)).toMatchObject({
      status: 'failed',
      attempts: 3,
      error: {
        code: 'download.max_deliveries',
        message: expect.stringMatching(/gave up after 3 deliveries/),
      },
    });
    fixtures.throttle(0);
  });

  it('when Redis is down as the max-deliveries advisory arrives, then the job still ends failed once Redis is back', async () => {
    // Only the workers of this test: each delivery goes to a worker killed as it starts the job.
    await Promise.all(workers.splice(0).map((w) => w.stop()));
    fixtures.throttle(30_000);
    const { id } = await postDownload(gateway.url, `${fixtures.origin}/mp4/video.mp4?advisory-redis`);
    for (let delivery = 1; delivery <= 3; delivery++) {
      spawned = spawnService('download-worker', platform.env({ ...ENV, LOG_LEVEL: 'info' }));
      await spawned.waitFor(/"msg":"Job started"/, 60_000);
      if (delivery === 3) {
        watcher = spawnService('download-worker', platform.env({ ...ENV, LOG_LEVEL: 'info' }));
        await watcher.waitFor(/Download worker ready/, 60_000);
        await spawned.stop('SIGKILL');
      } else await kill(spawned);
    }
    // The advisory comes one ack wait (2 s) after the last delivery: Redis is away by then.
    await platform.redis.stop();
    await watcher!.waitFor(/Cannot handle a max-deliveries advisory yet; retrying/, 45_000);
    await platform.redis.start();
    const done = await waitForJobs(gateway.url, [id!], 40_000);
    expect(done.get(id!)).toMatchObject({
      status: 'failed',
      error: { code: 'download.max_deliveries' },
    });
    fixtures.throttle(0);
  });

  it('when the source keeps answering 503, then the job is retried and ends failed with the source error after max_deliver', async () => {
    fixtures.fail('/mp4/flaky.mp4', 503);
    const nc = await connect({ servers: platform.nats.url });
    const events: JobEvent[] = [];
    nc.subscribe('events.job.download.>', {
      callback: (_err, msg) => void events.push(jobEventSchema.parse(msg.json())),
    });
    await nc.flush();
    const { status, id } = await postDownload(gateway.url, `${fixtures.origin}/mp4/flaky.mp4`);
    expect(status).toBe(202);
    const done = await waitForJobs(gateway.url, [id!], 50_000);
    expect(done.get(id!)).toMatchObject({
      status: 'failed',
      error: { code: 'network.http_5xx', message: expect.stringMatching(/503/) },
    });
    expect(fixtures.count('/mp4/flaky.mp4')).toBeGreaterThanOrEqual(3);
    // Every transition is an event: each retry puts the job back to queued, and says why.
    await nc.flush();
    const mine = events.filter((e) => e.job_id === id);
    const requeued = mine.filter((e) => e.type === 'queued' && e.reason === 'retry');
    expect(requeued.map((e) => (e.type === 'queued' ? e.attempt : 0))).toEqual([1, 2]);
    expect(requeued[0]).toMatchObject({ retry_in_ms: 1000, error: { code: 'network.http_5xx' } });
    expect(mine.map((e) => e.type).filter((t) => t !== 'progress')).toEqual([
      'queued',
      'started',
      'queued',
      'started',
      'queued',
      'started',
      'failed',
    ]);
    await nc.close();
  });
});
