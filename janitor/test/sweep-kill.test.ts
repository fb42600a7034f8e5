import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EXPIRY_INDEX,
  JANITOR_SUBJECTS,
  JobStore,
  LAST_SWEEP_KEY,
  SWEEP_LOCK_KEY,
  TOMBSTONE_TTL_MS,
  connectNats,
  createRedis,
  jobKey,
  uploadRefsKey,
  type Config,
  type JanitorRemovedEvent,
  type JobKind,
  type NatsConnection,
  type Redis,
  type Storage,
} from '@media-jobs/libs';
import { REPO_ROOT, spawnService, startPlatform, waitUntil, type Platform } from '@media-jobs/libs/testing';
import type { JanitorOptions } from '../src/janitor.js';
import type { SweepSummary } from '../src/report.js';
import { HOUR, normalizeIdFor, seedJob, storageOf, storeAged } from './helpers.js';

let platform: Platform;
let config: Config;
let redis: Redis;
let storage: Storage;
let nc: NatsConnection;

beforeAll(async () => {
  platform = await startPlatform();
  config = platform.config({ CACHE_TTL_HOURS: '1' });
  redis = createRedis(config);
  storage = storageOf(config);
  for (const dir of [storage.downloads, storage.normalized, storage.uploads, storage.tmp])
    await mkdir(dir, { recursive: true });
  nc = await connectNats(config, 'sweep-kill-test');
});
afterAll(async () => {
  await nc?.close();
  redis?.disconnect();
  await platform?.close();
});

interface Job {
  kind: JobKind;
  id: string;
  key: string;
  files: string[];
}

const EXPIRED_DOWNLOADS = 3000;
/** In pairs sharing one upload; the first `SHARED_WITH_LIVE` pairs share it with a live job too. */
const EXPIRED_NORMALIZE = 1000;
const SHARED_WITH_LIVE = 10;
const FILE_BYTES = 100;

/**
 * Expired jobs as the services leave them: record (half of them already expired by Redis),
 * index entry an hour in the past, upload references, and files. Written with pipelines:
 * thousands of claims one by one would take most of the test's time.
 */
async function seedExpired(): Promise<Job[]> {
  const old = storeAged(redis, config, 2 * HOUR);
  const jobs: Job[] = [];
  for (let i = 0; i < EXPIRED_DOWNLOADS; i++) {
    const id = `x${String(i).padStart(6, '0')}_best`;
    jobs.push({ kind: 'download', id, key: jobKey('download', id), files: [`downloads/${id}.mp4`] });
  }
  for (let i = 0; i < EXPIRED_NORMALIZE; i++) {
    const { id, sha256 } = normalizeIdFor(`upload-${Math.floor(i / 2)}`, i % 2 ? 'remove_noise' : 'mono');
    const files = [`normalized/${id}.wav`, `uploads/${sha256}.wav`];
    jobs.push({ kind: 'normalize', id, key: jobKey('normalize', id), files });
  }
  const pipe = redis.pipeline();
  jobs.forEach((job, i) => {
    const record = old.newRecord(job.kind, job.id, {});
    const expiresMs = Date.parse(record.expires_at);
    if (i % 2 === 0) pipe.set(job.key, JSON.stringify(record), 'PX', 10 * 60_000);
    pipe.zadd(EXPIRY_INDEX, expiresMs, job.key);
    if (job.kind === 'normalize') pipe.sadd(uploadRefsKey(job.id.slice(0, 16)), job.key);
  });
  await pipe.exec();
  const paths = [...new Set(jobs.flatMap((j) => j.files))];
  for (let i = 0; i < paths.length; i += 500) {
    await Promise.all(
      paths.slice(i, i + 500).map((p) => writeFile(join(storage.root, p), Buffer.alloc(FILE_BYTES, 1))),
    );
  }
  return jobs;
}

/** Live jobs through the real store: downloads, normalize jobs with their own upload, and some sharing an expired pair's upload. */
async function seedLive(): Promise<Job[]> {
  const store = new JobStore({ redis, ttlMs: config.cacheTtlMs });
  const jobs: Job[] = [];
  const add = async (kind: JobKind, id: string, sha256?: string) => {
    const abs = await seedJob(store, redis, storage, kind, id, sha256 ? { sha256, bytes: FILE_BYTES } : {});
    jobs.push({ kind, id, key: jobKey(kind, id), files: abs.map((f) => f.slice(storage.root.length + 1)) });
  };
  for (let i = 0; i < 200; i++) await add('download', `live${String(i).padStart(4, '0')}_720p`);
  for (let i = 0; i < 20; i++) {
    const { id, sha256 } = normalizeIdFor(`live-upload-${i}`, 'mono');
    await add('normalize', id, sha256);
  }
  for (let g = 0; g < SHARED_WITH_LIVE; g++) {
    const { id, sha256 } = normalizeIdFor(`upload-${g}`, 'normalize_volume');
    await add('normalize', id, sha256);
  }
  return jobs;
}

/** `janitor/test/fixtures/janitor-process.ts`: the janitor's own process, with small batches and a short lock. */
function spawnJanitorWith(env: Record<string, string>, options: JanitorOptions) {
  const child = spawn(
    process.execPath,
    [
      '--conditions=media-jobs-source',
      '--import',
      'tsx',
      'janitor/test/fixtures/janitor-process.ts',
      JSON.stringify(options),
    ],
    {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    child.once('exit', (code, signal) => resolve(signal ?? code)),
  );
  return { child, exited, output: () => out };
}

async function keysMatching(pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
}

async function existingRecords(jobs: readonly Job[]): Promise<number> {
  let n = 0;
  for (let i = 0; i < jobs.length; i += 1000) {
    const raws = await redis.mget(...jobs.slice(i, i + 1000).map((j) => j.key));
    n += raws.filter((r) => r !== null).length;
  }
  return n;
}

const LOCK_TTL_MS = 1500;

describe('janitor killed mid-sweep', () => {
  it('when a janitor process is SIGKILLed in the middle of a sweep, then a new janitor process removes every expired job, keeps every live one, leaves no marker behind, and the counts add up', async () => {
    const expired = await seedExpired();
    const live = await seedLive();
    const env = platform.env({ LOG_LEVEL: 'info', CACHE_TTL_HOURS: '1' });

    // The kill comes from the subscription callback itself, on the first job the sweep reports.
    const removedBy = { first: [] as JanitorRemovedEvent[], second: [] as JanitorRemovedEvent[] };
    const sweeps: unknown[] = [];
    let phase: 'first' | 'second' = 'first';
    const first = spawnJanitorWith(env, { batchSize: 50, fileBatchSize: 50, lockTtlMs: LOCK_TTL_MS });
    nc.subscribe(JANITOR_SUBJECTS.removed, {
      callback: (_err, msg) => {
        if (phase === 'first' && removedBy.first.length === 0) first.child.kill('SIGKILL');
        removedBy[phase].push(msg.json<JanitorRemovedEvent>());
      },
    });
    nc.subscribe(JANITOR_SUBJECTS.sweep, { callback: (_err, msg) => void sweeps.push(msg.json()) });
    await nc.flush();

    expect(await first.exited, first.output()).toBe('SIGKILL');
    // Whatever the killed process had sent before dying has arrived after a round trip.
    await nc.flush();
    phase = 'second';
    expect(sweeps).toEqual([]);

    // Half-way: some jobs finished, the rest still indexed (some of them perhaps claimed, with files gone).
    const now = Date.now();
    const left = await redis.zrangebyscore(EXPIRY_INDEX, '-inf', now);
    const firstFinished = expired.length - left.length;
    expect(firstFinished).toBeGreaterThan(0);
    expect(left.length).toBeGreaterThan(0);
    // Every job the killed janitor reported is entirely gone; it may have finished more than it could report.
    expect(removedBy.first.length).toBeGreaterThan(0);
    expect(removedBy.first.length).toBeLessThanOrEqual(firstFinished);
    const leftSet = new Set(left);
    for (const event of removedBy.first) {
      expect(leftSet.has(event.key as string)).toBe(false);
      expect(await redis.exists(event.key as string)).toBe(0);
      for (const f of event.files) expect(existsSync(join(storage.root, f))).toBe(false);
    }
    // Nothing the killed janitor left blocks anyone for ever: lock and tombstones all expire.
    const lockTtl = await redis.pttl(SWEEP_LOCK_KEY);
    expect(lockTtl === -2 || (lockTtl > 0 && lockTtl <= LOCK_TTL_MS), `lock PTTL ${lockTtl}`).toBe(true);
    for (const key of await keysMatching('sweeping:*')) {
      const ttl = await redis.pttl(key);
      expect(ttl === -2 || (ttl > 0 && ttl <= TOMBSTONE_TTL_MS), `${key} PTTL ${ttl}`).toBe(true);
    }
    for (const job of live) {
      for (const f of job.files) expect(existsSync(join(storage.root, f))).toBe(true);
    }

    // The lock expires by itself; then a new janitor (the real service) sweeps at start.
    await waitUntil('the dead sweep lock to expire', async () => (await redis.exists(SWEEP_LOCK_KEY)) === 0);
    const second = spawnService('janitor', env);
    try {
      const line = await second.waitFor(/Cleanup: removed \d+ jobs/, 60_000);
      expect(line).toContain(
        `removed ${left.length} jobs (${left.filter((k) => k.startsWith('job:')).length} download, ${left.filter((k) => k.startsWith('audio_job:')).length} normalize), freed`,
      );
      const summary = JSON.parse((await redis.get(LAST_SWEEP_KEY)) as string) as SweepSummary;
      expect(summary).toMatchObject({ trigger: 'startup', skipped: false });
      expect(summary.removed.orphan).toBe(0);
      expect(firstFinished + summary.removed.download + summary.removed.normalize).toBe(expired.length);
      await waitUntil('the sweep event', () => sweeps.length === 1);
      await nc.flush();
      expect(removedBy.second.map((e) => e.key).sort()).toEqual([...left].sort());
      expect(summary.files_removed).toBe(removedBy.second.reduce((n, e) => n + e.files.length, 0));

      // Every expired job is gone with its files; every live one is whole; no marker is left.
      expect(await redis.zcount(EXPIRY_INDEX, '-inf', '+inf')).toBe(live.length);
      expect(await existingRecords(expired)).toBe(0);
      for (const f of new Set(expired.flatMap((j) => j.files))) {
        const sharedWithLive = live.some((j) => j.files.includes(f));
        expect(existsSync(join(storage.root, f)), f).toBe(sharedWithLive);
      }
      expect(await existingRecords(live)).toBe(live.length);
      for (const job of live) {
        for (const f of job.files) expect(existsSync(join(storage.root, f)), f).toBe(true);
        expect(Number(await redis.zscore(EXPIRY_INDEX, job.key))).toBeGreaterThan(now);
      }
      expect(await keysMatching('sweeping:*')).toEqual([]);
      expect(await redis.exists(SWEEP_LOCK_KEY)).toBe(0);
      const refs = (await keysMatching('upload_refs:*')).sort();
      expect(refs).toEqual(
        live
          .filter((j) => j.kind === 'normalize')
          .map((j) => uploadRefsKey(j.id.slice(0, 16)))
          .sort(),
      );
      for (let g = 0; g < SHARED_WITH_LIVE; g++) {
        const { id } = normalizeIdFor(`upload-${g}`, 'normalize_volume');
        expect(await redis.smembers(uploadRefsKey(id.slice(0, 16)))).toEqual([jobKey('normalize', id)]);
      }
      expect(await second.stop()).toBe(0);
    } finally {
      await second.stop();
    }
  });
});
