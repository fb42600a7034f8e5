import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import {
  closeContext,
  createLogger,
  JobQueue,
  JobRunner,
  JOBS_STREAM,
  loadConfig,
  openContext,
  type Config,
  type JobRecord,
  type ServiceContext,
} from '@media-jobs/libs';
import {
  startNatsCluster,
  startRedisSentinels,
  tempDataDir,
  waitUntil,
  type NatsCluster,
  type RedisSentinelSet,
} from '@media-jobs/libs/testing';
import { jetstreamManager } from '@nats-io/jetstream';

// A 3-node NATS cluster (R3 streams) and Redis with a replica and three sentinels, all on
// loopback: the services keep working when the node that leads JOBS dies, and when the
// Redis master dies.

let cluster: NatsCluster;
let sentinels: RedisSentinelSet;
let data: { dir: string; remove(): Promise<void> };
let config: Config;
let ctx: ServiceContext;
let runner: JobRunner;
let runs = 0;

/** A generous budget for one recovery (election, failover) on a slow shared machine. */
const RECOVERY_MS = 60_000;

beforeAll(async () => {
  [cluster, sentinels, data] = await Promise.all([startNatsCluster(3), startRedisSentinels(), tempDataDir()]);
  config = loadConfig({
    NATS_URL: cluster.urls,
    NATS_REPLICAS: '3',
    REDIS_SENTINELS: sentinels.sentinelList,
    REDIS_SENTINEL_NAME: sentinels.name,
    DATA_DIR: data.dir,
    LOG_LEVEL: 'silent',
    JOB_ACK_WAIT_SECONDS: '2',
    JOB_RETRY_DELAY_SECONDS: '0.5',
  });
  ctx = await openContext('cluster-test', config, createLogger('cluster-test', config));
  runner = new JobRunner(ctx, {
    kind: 'download',
    handler: () => {
      runs += 1;
      return Promise.resolve({ result: { ok: true }, files: [] });
    },
    concurrency: 4,
    timeoutMs: 30_000,
  });
  await runner.start();
}, 120_000);

afterAll(async () => {
  await runner?.stop(100);
  if (ctx) await closeContext(ctx);
  await Promise.all([cluster?.close(), sentinels?.close(), data?.remove()]);
});

/** Retries what a client would retry (a 503 while a leader is elected, a failover) until the budget ends. */
const retrying = <T>(what: string, attempt: () => Promise<T>): Promise<T> =>
  waitUntil(what, async () => ({ value: await attempt() }), {
    timeoutMs: RECOVERY_MS,
    intervalMs: 200,
    retryErrors: true,
  }).then((box) => box.value);

async function submit(id: string): Promise<void> {
  const { job } = await retrying(`claim ${id}`, () =>
    ctx.store.claim('download', id, { url: `http://example.com/${id}`, quality: 'best' }),
  );
  await retrying(`queue ${id}`, () => new JobQueue(ctx.nc).enqueue(job.record));
}

const allCompleted = (ids: string[]): Promise<JobRecord[]> =>
  waitUntil(
    `jobs ${ids.join(', ')} to complete`,
    async () => {
      const records = await Promise.all(
        ids.map((id) =>
          ctx.store.get('download', id).then(
            (j) => j?.record ?? null,
            () => null,
          ),
        ),
      );
      return records.map((r) => r ?? { status: 'unreadable' });
    },
    // The statuses seen last are in the error should it time out.
    {
      timeoutMs: RECOVERY_MS,
      intervalMs: 100,
      until: (records) => records.every((r) => r.status === 'completed'),
    },
  ) as Promise<JobRecord[]>;

describe('scale-out: NATS cluster and Redis Sentinel', () => {
  it('when the services start on a cluster, then JOBS and EVENTS have 3 replicas', async () => {
    const jsm = await jetstreamManager(ctx.nc);
    for (const stream of [JOBS_STREAM, 'EVENTS']) {
      const info = await jsm.streams.info(stream);
      expect(info.config.num_replicas).toBe(3);
      expect(info.cluster?.replicas).toHaveLength(2);
    }
  });

  it('when the node that leads JOBS is killed, then jobs are still queued and every one completes once', async () => {
    const before = ['a1', 'a2', 'a3'].map((t) => `${t}_best`);
    for (const id of before) await submit(id);
    await allCompleted(before);
    const leader = await cluster.leaderOf(JOBS_STREAM);
    await leader.stop();
    const after = ['b1', 'b2', 'b3', 'b4'].map((t) => `${t}_best`);
    for (const id of after) await submit(id);
    const records = await allCompleted([...before, ...after]);
    for (const r of records) expect(r.attempts).toBe(1);
    expect(runs).toBe(before.length + after.length);
    const next = await cluster.leaderOf(JOBS_STREAM);
    expect(next.name).not.toBe(leader.name);
    await leader.start();
  });

  it('when the Redis master is killed, then the sentinels promote the replica, the services follow it, and no accepted job is lost', async () => {
    const first = await sentinels.currentMaster();
    expect(first).toBe(`127.0.0.1:${sentinels.master.port}`);
    // Accepted just before the failover: the claim waited for the replica (WAIT), so it survives.
    await submit('c1_best');
    await sentinels.master.stop();
    await expect
      .poll(() => sentinels.currentMaster().catch(() => first), { timeout: RECOVERY_MS, interval: 200 })
      .toBe(`127.0.0.1:${sentinels.replica.port}`);
    await submit('c2_best');
    const records = await allCompleted(['c1_best', 'c2_best']);
    expect(records.map((r) => r.status)).toEqual(['completed', 'completed']);
    const promoted = new Redis({ port: sentinels.replica.port, host: '127.0.0.1' });
    try {
      expect((await promoted.info('replication')).includes('role:master')).toBe(true);
      expect(await promoted.exists('job:c1_best', 'job:c2_best')).toBe(2);
    } finally {
      promoted.disconnect();
    }
  });
});
