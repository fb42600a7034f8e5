import { rm, writeFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import {
  ACTIVE_INDEX,
  AppError,
  closeContext,
  createLogger,
  JobQueue,
  JobRunner,
  jobEventSchema,
  openContext,
  type JobEvent,
  type JobHandler,
  type JobRecord,
  type ServiceContext,
} from '@media-jobs/libs';
import { startPlatform, waitUntil, type Platform } from '@media-jobs/libs/testing';

// The job lifecycle has no stuck state: every way a run can end leaves the record and the
// request in agreement, with Redis there or away.

let platform: Platform;
let nc: NatsConnection;
const events: (JobEvent & { seenWhile?: string })[] = [];
const contexts: ServiceContext[] = [];
const runners: JobRunner[] = [];
const logLines: string[] = [];

const ENV = { JOB_ACK_WAIT_SECONDS: '1', JOB_MAX_DELIVER: '3', JOB_RETRY_DELAY_SECONDS: '0.2' };

beforeAll(async () => {
  // Append-only: a Redis restart keeps the records, as in production.
  platform = await startPlatform({ redis: { appendonly: true } });
  nc = await connect({ servers: platform.nats.url });
  nc.subscribe('events.job.>', { callback: (_e, m) => void events.push(jobEventSchema.parse(m.json())) });
  await nc.flush();
});

afterEach(async () => {
  for (const r of runners.splice(0)) await r.stop(100);
});

afterAll(async () => {
  for (const c of contexts) await closeContext(c);
  await nc?.close();
  await platform?.close();
});

/** A context whose log lines the test reads. */
async function context(): Promise<ServiceContext> {
  const config = platform.config({ ...ENV, LOG_LEVEL: 'debug' });
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const ctx = await openContext('lifecycle-test', config, createLogger('lifecycle-test', config, sink));
  contexts.push(ctx);
  return ctx;
}

async function runner(ctx: ServiceContext, handler: JobHandler): Promise<JobRunner> {
  const r = new JobRunner(ctx, { kind: 'download', handler, concurrency: 2, timeoutMs: 60_000 });
  await r.start();
  runners.push(r);
  return r;
}

async function submit(ctx: ServiceContext, id: string): Promise<void> {
  const { job } = await ctx.store.claim('download', id, { url: `http://example.com/${id}`, quality: 'best' });
  await new JobQueue(ctx.nc).enqueue(job.record);
}

/** Polls until `check` gives a value (a failing check is "not yet"), naming what it waited for. */
const until = <T>(what: string, check: () => Promise<T | null | undefined>): Promise<T> =>
  waitUntil(what, check, { retryErrors: true }) as Promise<T>;

const recordOf = async (ctx: ServiceContext, id: string): Promise<JobRecord | undefined> =>
  (await ctx.store.get('download', id))?.record;
const finished = (ctx: ServiceContext, id: string) =>
  until(`job ${id} to finish`, async () => {
    const r = await recordOf(ctx, id);
    return r && (r.status === 'completed' || r.status === 'failed') ? r : null;
  });
const eventsOf = (id: string, type: string) => events.filter((e) => e.job_id === id && e.type === type);

describe('job lifecycle', () => {
  it('when the work folder cannot be made, then the job is retried and ends failed, never stuck processing', async () => {
    const ctx = await context();
    let runs = 0;
    await runner(ctx, () => {
      runs += 1;
      return Promise.resolve({ result: {}, files: [] });
    });
    // A file where the work folders go: every run fails before the handler is called.
    await rm(ctx.storage.tmp, { recursive: true, force: true });
    await writeFile(ctx.storage.tmp, 'not a folder');
    try {
      await submit(ctx, 'nodir_best');
      const record = await finished(ctx, 'nodir_best');
      expect(record).toMatchObject({ status: 'failed', attempts: 3, error: { code: 'download.internal' } });
      expect(runs).toBe(0);
      // The event follows the record's write.
      await until('the failed event', async () =>
        eventsOf('nodir_best', 'failed').length > 0 ? true : null,
      );
      expect(eventsOf('nodir_best', 'failed')).toHaveLength(1);
      // Nothing keeps telling JetStream the job is being worked on: the request is gone.
      const consumer = await until('the request to be acknowledged', async () => {
        const info = await (await import('@nats-io/jetstream')).jetstreamManager(ctx.nc);
        const c = await info.consumers.info('JOBS', 'download-worker');
        return c.num_ack_pending === 0 && c.num_pending === 0 ? c : null;
      });
      expect(consumer.num_ack_pending).toBe(0);
      expect(await ctx.redis.zscore(ACTIVE_INDEX, 'job:nodir_best')).toBeNull();
    } finally {
      await rm(ctx.storage.tmp, { force: true });
      await import('node:fs/promises').then((fs) => fs.mkdir(ctx.storage.tmp, { recursive: true }));
    }
  });

  it('when Redis is away as a job fails for good, then the request is held, no failed event goes out while the record says processing, and the job ends failed once Redis is back, without a second run', async () => {
    const ctx = await context();
    let runs = 0;
    await runner(ctx, async () => {
      runs += 1;
      if (runs === 1) await platform.redis.stop();
      throw new AppError('download.unavailable', 'the video is gone');
    });
    await submit(ctx, 'failaway_best');
    await until('the runner to wait for Redis', async () =>
      logLines.find((l) => l.includes('Cannot record the failed job; waiting for Redis')),
    );
    expect(eventsOf('failaway_best', 'failed')).toHaveLength(0);
    // Held, not put back: no delivery is spent while Redis is away.
    const held = await jetstreamManager(ctx.nc).then((m) => m.consumers.info('JOBS', 'download-worker'));
    expect([held.num_ack_pending, held.num_redelivered]).toEqual([1, 0]);
    await platform.redis.start();
    const record = await finished(ctx, 'failaway_best');
    expect(record).toMatchObject({ status: 'failed', error: { code: 'download.unavailable' } });
    expect(runs).toBe(1);
    const failed = await until('the failed event', async () => {
      const list = eventsOf('failaway_best', 'failed');
      return list.length > 0 ? list : null;
    });
    expect(failed).toHaveLength(1);
  });

  it('when Redis is away as a job completes, then the request is held and the job completes once Redis is back, without a second run', async () => {
    const ctx = await context();
    let runs = 0;
    await runner(ctx, async () => {
      runs += 1;
      if (runs === 1) await platform.redis.stop();
      return { result: { run: runs }, files: [] };
    });
    await submit(ctx, 'doneaway_best');
    await until('the runner to wait for Redis', async () =>
      logLines.find((l) => l.includes('Cannot record the completed job; waiting for Redis')),
    );
    await platform.redis.start();
    const record = await finished(ctx, 'doneaway_best');
    expect(record).toMatchObject({ status: 'completed', result: { run: 1 } });
    expect(runs).toBe(1);
    expect(await ctx.redis.zscore(ACTIVE_INDEX, 'job:doneaway_best')).toBeNull();
  });

  it('when a job runs, then its worker stamps it in the active index until it ends', async () => {
    const ctx = await context();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    await runner(ctx, async () => {
      await gate;
      return { result: {}, files: [] };
    });
    await submit(ctx, 'beat_best');
    const first = await until('a first stamp', async () => {
      const r = await recordOf(ctx, 'beat_best');
      return r?.status === 'processing'
        ? Number(await ctx.redis.zscore(ACTIVE_INDEX, 'job:beat_best'))
        : null;
    });
    // The heartbeat (every ack wait / 3) moves the stamp on while the handler waits.
    await until('a later stamp', async () => {
      const now = Number(await ctx.redis.zscore(ACTIVE_INDEX, 'job:beat_best'));
      return now > first ? now : null;
    });
    release();
    expect(await finished(ctx, 'beat_best')).toMatchObject({ status: 'completed' });
    expect(await ctx.redis.zscore(ACTIVE_INDEX, 'job:beat_best')).toBeNull();
  });
});
