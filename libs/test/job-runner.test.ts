import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  AppError,
  closeContext,
  createLogger,
  JobQueue,
  JobRunner,
  jobEventSchema,
  openContext,
  type JobEvent,
  type JobHandler,
  type ServiceContext,
} from '@media-jobs/libs';
import { startPlatform, waitUntilJobSettled, type Platform } from '@media-jobs/libs/testing';

let platform: Platform;
let nc: NatsConnection;
const events: JobEvent[] = [];
const contexts: ServiceContext[] = [];
const runners: JobRunner[] = [];

const ENV = { JOB_ACK_WAIT_SECONDS: '1', JOB_MAX_DELIVER: '3', JOB_RETRY_DELAY_SECONDS: '0.1' };

beforeAll(async () => {
  platform = await startPlatform();
  nc = await connect({ servers: platform.nats.url });
  nc.subscribe('events.job.>', { callback: (_e, m) => void events.push(jobEventSchema.parse(m.json())) });
});

// Every runner shares the durable consumer, so each test stops its own before the next starts.
afterEach(async () => {
  for (const r of runners.splice(0)) await r.stop(100);
});

afterAll(async () => {
  for (const c of contexts) await closeContext(c);
  await nc?.close();
  await platform?.close();
});

async function context(): Promise<ServiceContext> {
  const config = platform.config(ENV);
  const ctx = await openContext('runner-test', config, createLogger('runner-test', config));
  contexts.push(ctx);
  return ctx;
}

async function runner(ctx: ServiceContext, handler: JobHandler, timeoutMs = 30_000): Promise<JobRunner> {
  const r = new JobRunner(ctx, {
    kind: 'download',
    handler,
    concurrency: 2,
    timeoutMs,
    progressIntervalMs: 50,
  });
  await r.start();
  runners.push(r);
  return r;
}

async function submit(ctx: ServiceContext, id: string) {
  const { job } = await ctx.store.claim('download', id, { url: `http://example.com/${id}`, quality: 'best' });
  await new JobQueue(ctx.nc).enqueue(job.record);
  return job;
}

const statusOf = async (ctx: ServiceContext, id: string) => (await ctx.store.get('download', id))?.record;
const eventsOf = (id: string, type?: string) =>
  events.filter((e) => e.job_id === id && (!type || e.type === type));

describe('JobRunner', () => {
  it('when the handler succeeds, then the job completes with its result, a fresh expiry and started/progress/completed events', async () => {
    const ctx = await context();
    await runner(ctx, async (run) => {
      for (let p = 10; p <= 90; p += 10) {
        run.progress(p, 'working');
        // The work itself: a job that takes a moment, so progress has time to go out.
        await new Promise((r) => setTimeout(r, 20));
      }
      const file = join(ctx.storage.downloads, `${run.job.id}.txt`);
      await writeFile(file, 'ok');
      return { result: { file: `${run.job.id}.txt` }, files: [file] };
    });
    const job = await submit(ctx, 'ok1234567ab_best');
    await expect
      .poll(() => statusOf(ctx, 'ok1234567ab_best').then((r) => r?.status), { timeout: 10_000 })
      .toBe('completed');
    const done = (await statusOf(ctx, 'ok1234567ab_best'))!;
    expect(done).toMatchObject({ progress: 100, attempts: 1, result: { file: 'ok1234567ab_best.txt' } });
    expect(Date.parse(done.expires_at)).toBeGreaterThan(Date.parse(job.record.expires_at));
    await expect.poll(() => eventsOf('ok1234567ab_best', 'completed').length).toBe(1);
    expect(eventsOf('ok1234567ab_best', 'started')).toHaveLength(1);
    expect(eventsOf('ok1234567ab_best', 'progress').length).toBeGreaterThan(0);
  });

  it('when the handler fails for good, then the job fails after one attempt with the code and message', async () => {
    const ctx = await context();
    let calls = 0;
    const r = await runner(ctx, async () => {
      calls += 1;
      throw new AppError('download.unavailable', 'HTTP Error 404: Not Found');
    });
    await submit(ctx, 'gone4567890_best');
    await expect
      .poll(() => statusOf(ctx, 'gone4567890_best').then((r) => r?.status), { timeout: 10_000 })
      .toBe('failed');
    expect((await statusOf(ctx, 'gone4567890_best'))?.error).toEqual({
      code: 'download.unavailable',
      message: 'HTTP Error 404: Not Found',
    });
    // A retry or a redelivery would need the request: once it is gone and the runner idle, none can come.
    await waitUntilJobSettled(nc, 'download', 'gone4567890_best', { runners: [r], publishers: [ctx.nc] });
    expect(calls).toBe(1);
    expect(eventsOf('gone4567890_best', 'failed')).toHaveLength(1);
  });

  it('when the handler keeps failing with a retryable error, then it is retried up to max_deliver and then fails', async () => {
    const ctx = await context();
    let calls = 0;
    await runner(ctx, async () => {
      calls += 1;
      throw new AppError('download.network', 'connection reset', { retryable: true });
    });
    await submit(ctx, 'flaky567890_best');
    await expect
      .poll(() => statusOf(ctx, 'flaky567890_best').then((r) => r?.status), { timeout: 15_000 })
      .toBe('failed');
    expect(calls).toBe(3);
    expect((await statusOf(ctx, 'flaky567890_best'))?.attempts).toBe(3);
  });

  it('when the job is deleted while it runs, then the run is aborted and its output removed', async () => {
    const ctx = await context();
    let reason: unknown;
    await runner(ctx, async (run) => {
      await ctx.store.remove('download', run.job.id);
      // Work that reports progress until it is stopped: a progress write is what finds the
      // record gone. The pause is the work's pace, not a wait for the abort.
      for (let i = 0; !run.signal.aborted; i++) {
        run.progress(i % 100);
        await new Promise((r) => setTimeout(r, 20));
      }
      reason = run.signal.reason;
      return { result: {}, files: [] };
    });
    await submit(ctx, 'del34567890_best');
    await expect.poll(() => reason, { timeout: 10_000 }).toBe('deleted');
    expect(await statusOf(ctx, 'del34567890_best')).toBeUndefined();
  });

  it('when a worker dies on the last allowed delivery, then the max-deliveries advisory fails the job instead of leaving it processing', async () => {
    const config = platform.config({ ...ENV, JOB_MAX_DELIVER: '1' });
    const doomed = await openContext('doomed', config, createLogger('doomed', config));
    const started = new Promise<void>((resolve) => {
      void runner(doomed, async (run) => {
        resolve();
        await new Promise((r) => run.signal.addEventListener('abort', r));
        return { result: {}, files: [] };
      });
    });
    // Same config: every service sets the consumer's max_deliver from its own JOB_MAX_DELIVER.
    const watcher = await openContext('watcher', config, createLogger('watcher', config));
    contexts.push(watcher);
    await submit(watcher, 'dead4567890_best');
    await started;
    await doomed.nc.close(); // the worker "dies": no ack, no nak, no heartbeat
    await doomed.redis.quit();
    await runner(watcher, async () => ({ result: {}, files: [] }));
    await expect
      .poll(() => statusOf(watcher, 'dead4567890_best').then((r) => r?.status), { timeout: 15_000 })
      .toBe('failed');
    expect((await statusOf(watcher, 'dead4567890_best'))?.error?.code).toBe('download.max_deliveries');
    // The event follows the record's write: it may arrive a moment after the status shows.
    await expect.poll(() => eventsOf('dead4567890_best', 'failed').length, { timeout: 5000 }).toBe(1);
  });
});
