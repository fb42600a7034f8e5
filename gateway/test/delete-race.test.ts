import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  CACHE_STATS_KEY,
  closeContext,
  createLogger,
  JobRunner,
  JobStore,
  openContext,
  sweepingKey,
  type JobHandler,
  type JobKind,
  type ServiceContext,
  type StoredJob,
} from '@media-jobs/libs';
import { startPlatform, type Platform } from '@media-jobs/libs/testing';
import type { GatewayHooks } from '../src/deps.js';
import { startGateway, type Gateway } from '../src/gateway.js';

/**
 * `DELETE /jobs/:id` against a new identical submission and against a worker that finishes
 * the deleted job late. Result paths are per job id, so the old job's deletion and the old
 * run's clean-up touch the very path the new job completes into; the live job's file must
 * survive both. Seams hold each party between two of its steps while the other goes on.
 */

/**
 * A real store with a seam in `get`. The runner's clean-up of a stale run's output
 * (`discardOutput`) reads the current record and then removes the files; `onDiscardRead`
 * runs between the two. A clean-up that does not read the record that way never calls it.
 */
class SeamStore extends JobStore {
  onDiscardRead: (() => Promise<void>) | undefined;

  override async get(kind: JobKind, id: string): Promise<StoredJob | null> {
    const fromDiscard = new Error().stack?.includes('discardOutput') ?? false;
    const stored = await super.get(kind, id);
    const seam = this.onDiscardRead;
    if (fromDiscard && seam) {
      this.onDiscardRead = undefined;
      await seam();
    }
    return stored;
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

let platform: Platform;
let gateway: Gateway;
let ctx: ServiceContext;
let store: SeamStore;
let runner: JobRunner;
let watcher: Redis;
const hooks: GatewayHooks = { deletion: {} };
/** Per source URL, what its runs wait for before they write their output, in run order. */
const gates = new Map<string, Promise<void>[]>();
/** Generations whose handler has started. */
const started = new Set<string>();

// The "download": a file named after the job whose content is the job's generation, so the
// test can tell whose file sits at the path.
const handler: JobHandler = async (run) => {
  started.add(run.job.created_at);
  await gates.get(String(run.job.request.url))?.shift();
  const file = join(ctx.storage.downloads, `${run.job.id}.mp4`);
  await writeFile(file, run.job.created_at);
  return { result: { file: basename(file) }, files: [file] };
};

beforeAll(async () => {
  platform = await startPlatform();
  watcher = new Redis(platform.redis.url);
  const config = platform.config();
  gateway = await startGateway(config, undefined, { hooks });
  const base = await openContext('delete-race-worker', config, createLogger('delete-race-worker', config));
  store = new SeamStore({ redis: base.redis, ttlMs: config.cacheTtlMs });
  ctx = { ...base, store };
  runner = new JobRunner(ctx, { kind: 'download', handler, concurrency: 2, timeoutMs: 60_000 });
  await runner.start();
});

afterEach(() => {
  hooks.deletion = {};
  store.onDiscardRead = undefined;
});

afterAll(async () => {
  await runner?.stop(1000);
  if (ctx) await closeContext(ctx);
  await gateway?.stop();
  watcher?.disconnect();
  await platform?.close();
});

/**
 * Watches Redis (MONITOR) for a job claim of this download id: `JobStore.create`'s script,
 * the only one besides the deletion's that names the key's tombstone. `seen` resolves once
 * Redis has run one.
 */
async function watchClaim(id: string): Promise<{ seen: Promise<void> }> {
  const tombstone = sweepingKey(`job:${id}`);
  const monitor = await watcher.monitor();
  const seen = new Promise<void>((resolve) =>
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (/^eval/i.test(args[0] ?? '') && args.includes(tombstone) && args.includes(CACHE_STATS_KEY))
        resolve();
    }),
  );
  return { seen: seen.finally(() => monitor.disconnect()) };
}

let seq = 0;
/** A source URL of its own per test, so each test has its own job id. */
const newSource = () => `http://127.0.0.1:9/clip-${Date.now()}-${++seq}.mp4`;

async function submit(url: string): Promise<{ status: number; body: Record<string, any> }> {
  const res = await fetch(`${gateway.url}/download`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url, quality: 'best' }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

async function remove(id: string): Promise<number> {
  const res = await fetch(`${gateway.url}/jobs/${id}`, { method: 'DELETE' });
  await res.body?.cancel();
  return res.status;
}

const recordOf = async (id: string) => (await ctx.store.get('download', id))?.record;
const fileOf = (id: string) => join(ctx.storage.downloads, `${id}.mp4`);

async function untilStatus(id: string, status: string, createdAt?: string): Promise<void> {
  await expect
    .poll(
      async () => {
        const r = await recordOf(id);
        return r && (!createdAt || r.created_at === createdAt) ? r.status : null;
      },
      { timeout: 20_000 },
    )
    .toBe(status);
}

/** The live job's state, file and HTTP download: what a client of the new job gets. */
async function expectLiveFile(id: string, createdAt: string): Promise<void> {
  await untilStatus(id, 'completed', createdAt);
  expect(existsSync(fileOf(id)), 'the completed job has its file').toBe(true);
  expect(await readFile(fileOf(id), 'utf8')).toBe(createdAt);
  const res = await fetch(`${gateway.url}/jobs/${id}/file`);
  expect(res.status).toBe(200);
  expect(await res.text()).toBe(createdAt);
}

describe('DELETE /jobs/:id races', () => {
  it('when a deletion stalls between the record and the files, then an identical submission waits and answers 503, and no job is created whose file the deletion removes', async () => {
    const url = newSource();
    const first = await submit(url);
    expect(first.status).toBe(202);
    const id = first.body.id as string;
    await untilStatus(id, 'completed');

    let during: { status: number; body: Record<string, any> } | undefined;
    let tombstoneHeld = 0;
    hooks.deletion = {
      // Record gone, old file still there. A job created now and completed before the
      // deletion goes on would lose its file to it; so let such a job finish first.
      afterClaim: async () => {
        tombstoneHeld = await ctx.redis.exists(sweepingKey(`job:${id}`));
        during = await submit(url);
        if (during.status === 202) await untilStatus(id, 'completed', during.body.created_at as string);
      },
    };
    expect(await remove(id)).toBe(200);
    hooks.deletion = {};

    // While the deletion held the tombstone, no job with this id could be created: the
    // submission waited, and answered 503 when the (here stalled) deletion outlasted its wait.
    expect(during?.status).toBe(503);
    expect(during?.body.error.code).toBe('job.sweeping');
    expect(tombstoneHeld).toBe(1);
    expect(await ctx.redis.exists(sweepingKey(`job:${id}`))).toBe(0);
    const again = await submit(url);
    expect(again.status).toBe(202);
    await expectLiveFile(id, again.body.created_at as string);
  });

  it('when an identical submission comes during a deletion of normal speed, then it is answered once the files are gone and completes with its file', async () => {
    const url = newSource();
    const first = await submit(url);
    const id = first.body.id as string;
    await untilStatus(id, 'completed');

    let racing: Promise<{ status: number; body: Record<string, any> }> | undefined;
    hooks.deletion = {
      afterClaim: async () => {
        const claim = await watchClaim(id);
        racing = submit(url);
        await claim.seen;
        // A job its claim created (no tombstone in the way) may complete now, before the
        // deletion goes on; with the tombstone there is none.
        const created = await recordOf(id);
        if (created) await untilStatus(id, 'completed', created.created_at);
      },
    };
    expect(await remove(id)).toBe(200);
    const answer = await racing!;
    expect(answer.status).toBe(202);
    await expectLiveFile(id, answer.body.created_at as string);
  });

  it('when the deleted job’s worker finishes while the new identical job completes, then the new job’s file stays', async () => {
    const url = newSource();
    // Both runs are held before they write their output.
    const oldGate = deferred();
    const newGate = deferred();
    gates.set(url, [oldGate.promise, newGate.promise]);
    const first = await submit(url);
    const id = first.body.id as string;
    const oldGen = first.body.created_at as string;
    await expect.poll(() => started.has(oldGen), { timeout: 20_000 }).toBe(true);
    await untilStatus(id, 'processing', oldGen);

    expect(await remove(id)).toBe(200);
    const second = await submit(url);
    expect(second.status).toBe(202);
    const newGen = second.body.created_at as string;
    await expect.poll(() => started.has(newGen), { timeout: 20_000 }).toBe(true);

    // The old run writes its output at the shared path, and its final write fails (the
    // record is the new job's). Between its clean-up's read of the record (the new job,
    // still processing) and its removal, the new job completes into that path.
    let seamUsed = false;
    store.onDiscardRead = async () => {
      seamUsed = true;
      newGate.resolve();
      await untilStatus(id, 'completed', newGen);
    };
    oldGate.resolve();
    // Once the old run is over (whichever way its clean-up went), the new one may finish: with
    // the seam used, both runs end there; without it, only the old one has.
    await expect
      .poll(() => runner.active === 0 || (runner.active === 1 && !seamUsed), { timeout: 20_000 })
      .toBe(true);
    newGate.resolve();
    await expectLiveFile(id, newGen);
  });

  it('when the deleted job’s worker finishes with nothing new submitted, then its output is removed and no file is left without a record', async () => {
    const url = newSource();
    const gate = deferred();
    gates.set(url, [gate.promise]);
    const first = await submit(url);
    const id = first.body.id as string;
    await expect.poll(() => started.has(first.body.created_at as string), { timeout: 20_000 }).toBe(true);

    expect(await remove(id)).toBe(200);
    gate.resolve();
    await expect.poll(() => runner.active, { timeout: 20_000 }).toBe(0);
    expect(await recordOf(id)).toBeUndefined();
    expect(existsSync(fileOf(id))).toBe(false);
    expect(await ctx.redis.exists(sweepingKey(`job:${id}`))).toBe(0);
  });
});
