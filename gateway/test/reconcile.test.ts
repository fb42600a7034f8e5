import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import {
  ACTIVE_INDEX,
  closeRedis,
  createRedis,
  jobEventSchema,
  JOBS_STREAM,
  type JobEvent,
  type JobRecord,
  type Redis,
} from '@media-jobs/libs';
import {
  NO_RATE_LIMITS,
  getJob,
  makeMp4,
  postDownload,
  spawnService,
  startFixtureServer,
  startPlatform,
  waitForJobs,
  type FixtureServer,
  type Platform,
  type ServiceProcess,
} from '@media-jobs/libs/testing';
import { startDownloadWorker, type DownloadWorker } from '../../download-worker/src/worker.js';
import { startJanitor, type Janitor } from '../../janitor/src/janitor.js';
import { startGateway, type Gateway } from '../src/gateway.js';

// The reconciler: a job whose request no queue or worker holds any more is queued again,
// within a few ack waits, and never runs twice at once.

let platform: Platform;
let fixtures: FixtureServer;
let gateway: Gateway;
let janitor: Janitor;
let nc: NatsConnection;
let redis: Redis;
let videoBytes = 0;
const events: JobEvent[] = [];
const workers: DownloadWorker[] = [];
const spawned: ServiceProcess[] = [];

const ENV = { JOB_ACK_WAIT_SECONDS: '2', JOB_RETRY_DELAY_SECONDS: '1', ...NO_RATE_LIMITS };
/** Silence before a job is looked at (two ack waits), a pass every half ack wait, and room for a slow machine. */
const RECOVERY_BUDGET_MS = 60_000;

beforeAll(async () => {
  platform = await startPlatform();
  fixtures = await startFixtureServer();
  const video = await makeMp4({ width: 320, height: 180, seconds: 2 });
  videoBytes = (await stat(video)).size;
  fixtures.mount('mp4', join(video, '..'));
  gateway = await startGateway(platform.config(ENV));
  janitor = await startJanitor(platform.config(ENV));
  nc = await connect({ servers: platform.nats.url });
  nc.subscribe('events.job.>', { callback: (_e, m) => void events.push(jobEventSchema.parse(m.json())) });
  await nc.flush();
  redis = createRedis(platform.config());
}, 120_000);

afterEach(async () => {
  fixtures.throttle(0);
  await Promise.all(spawned.splice(0).map((p) => p.stop('SIGKILL')));
  await Promise.all(workers.splice(0).map((w) => w.stop()));
});

afterAll(async () => {
  await janitor?.stop();
  await gateway?.stop();
  await nc?.close();
  if (redis) await closeRedis(redis);
  await fixtures?.close();
  await platform?.close();
});

const eventsOf = (id: string, type: string, reason?: string) =>
  events.filter(
    (e) => e.job_id === id && e.type === type && (!reason || ('reason' in e && e.reason === reason)),
  );

async function purgeJobs(): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.purge(JOBS_STREAM);
  expect((await jsm.streams.info(JOBS_STREAM)).state.messages).toBe(0);
}

async function completed(ids: string[]): Promise<Map<string, JobRecord | null>> {
  const done = await waitForJobs(gateway.url, ids, RECOVERY_BUDGET_MS);
  for (const id of ids) expect(done.get(id), `job ${id}`).toMatchObject({ status: 'completed' });
  return done;
}

const mp4 = (tag: string) => `${fixtures.origin}/mp4/video.mp4?${tag}`;

describe('reconciler', () => {
  it('when the gateway dies between writing the record and queueing the request, then the job is queued again and completes', async () => {
    const proc = spawnService(
      'gateway',
      platform.env({ ...ENV, LOG_LEVEL: 'info', MEDIA_JOBS_TEST_FAULT: 'crash_before_enqueue' }),
    );
    spawned.push(proc);
    const port = /"port":(\d+)/.exec(await proc.waitFor(/Gateway listening/))?.[1];
    const answer = await postDownload(`http://127.0.0.1:${port}`, mp4('crash')).catch((err: unknown) => err);
    expect(answer).toBeInstanceOf(Error);
    expect(await proc.stop()).toBeNull();
    expect(proc.child.signalCode).toBe('SIGKILL');

    // The record is there, its request never was: before the reconciler, a cache hit until its TTL.
    const hit = await postDownload(gateway.url, mp4('crash'));
    expect(hit).toMatchObject({ status: 200, body: { status: 'queued', cache_hit: true } });
    const id = hit.id as string;
    workers.push(await startDownloadWorker(platform.config(ENV)));
    const done = await completed([id]);
    expect(done.get(id)).toMatchObject({ attempts: 1 });
    expect(eventsOf(id, 'queued', 'recovered')).toHaveLength(1);
    expect(eventsOf(id, 'started')).toHaveLength(1);
  });

  it('when the JOBS stream is purged under queued jobs, then every job is queued again and completes once', async () => {
    const ids: string[] = [];
    for (const tag of ['p1', 'p2', 'p3', 'p4']) {
      const submitted = await postDownload(gateway.url, mp4(tag));
      expect(submitted.status).toBe(202);
      ids.push(submitted.id as string);
    }
    await purgeJobs();
    workers.push(await startDownloadWorker(platform.config(ENV)));
    const done = await completed(ids);
    for (const id of ids) {
      expect(done.get(id)).toMatchObject({ attempts: 1 });
      expect(eventsOf(id, 'queued', 'recovered')).toHaveLength(1);
      expect(eventsOf(id, 'started')).toHaveLength(1);
    }
    expect(await redis.zcard(ACTIVE_INDEX)).toBe(0);
  });

  it('when the request of a running job is purged, then the job is not queued again while its worker beats, and it runs once', async () => {
    workers.push(await startDownloadWorker(platform.config(ENV)));
    // About 10 s of download: five ack waits, more than the silence after which a job is looked at.
    fixtures.throttle(Math.ceil(videoBytes / 10));
    const { id } = await postDownload(gateway.url, mp4('running'));
    await expect.poll(() => eventsOf(id as string, 'started').length, { timeout: 30_000 }).toBe(1);
    await purgeJobs();
    // The reconciler has looked at the running job (its passes stamp nothing of a live one) by the time it ends.
    const done = await completed([id as string]);
    expect(done.get(id as string)).toMatchObject({ attempts: 1 });
    expect(eventsOf(id as string, 'queued', 'recovered')).toHaveLength(0);
    expect(eventsOf(id as string, 'started')).toHaveLength(1);
    expect(fixtures.count('/mp4/video.mp4')).toBeGreaterThan(0);
  });

  it('when the worker of a running job is killed and its request is lost, then the job is queued again and completes', async () => {
    fixtures.throttle(Math.ceil(videoBytes / 20));
    const proc = spawnService('download-worker', platform.env({ ...ENV, LOG_LEVEL: 'info' }));
    spawned.push(proc);
    await proc.waitFor(/Download worker ready/, 60_000);
    const { id } = await postDownload(gateway.url, mp4('killed'));
    await proc.waitFor(/"msg":"Job started"/, 60_000);
    await proc.stop('SIGKILL');
    await purgeJobs();
    expect((await getJob(gateway.url, id as string))?.status).toBe('processing');
    fixtures.throttle(0);
    workers.push(await startDownloadWorker(platform.config(ENV)));
    const done = await completed([id as string]);
    expect(done.get(id as string)).toMatchObject({ attempts: 2 });
    expect(eventsOf(id as string, 'queued', 'recovered')).toHaveLength(1);
  });
});
