import { readdir, readFile, rm, mkdtemp } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Redis } from 'ioredis';
import {
  BUCKETS,
  EXPIRY_INDEX,
  JOBS_STREAM,
  NatsFileStore,
  jobKey,
  loadConfig,
  type Bucket,
  type Config,
  type JobKind,
} from '@media-jobs/libs';
import {
  makeMp4,
  makeTone,
  startFixtureServer,
  startNatsCluster,
  startRedisSentinels,
  tempDataDir,
  waitUntil,
  type FixtureServer,
  type NatsCluster,
  type RedisSentinelSet,
} from '@media-jobs/libs/testing';
import { startDownloadWorker } from '../../download-worker/src/worker.js';
import { startNormalizeWorker } from '../../normalize-worker/src/worker.js';
import { startJanitor } from '../../janitor/src/janitor.js';
import { startGateway, type Gateway } from '../src/gateway.js';

// Every service scaled out, as on separate hosts: a 3-node NATS cluster (streams and buckets
// R3), Redis with a replica and three sentinels, two gateways, two workers of each kind and a
// janitor, each with its own DATA_DIR and STORAGE=nats. Jobs of both kinds are submitted
// while the node that leads JOBS dies, and then while the Redis master dies.

/** A generous budget for one recovery (election, failover) and the jobs after it, on a slow shared machine. */
const RECOVERY_MS = 150_000;

let cluster: NatsCluster;
let sentinels: RedisSentinelSet;
let fixtures: FixtureServer;
let nc: NatsConnection;
let redis: Redis;
let objects: NatsFileStore;
let mp4Url: string;
let scratch: string;
const tones: Buffer[] = [];
const gateways: Gateway[] = [];
const stops: (() => Promise<void>)[] = [];
const dirs: { dir: string; remove(): Promise<void> }[] = [];
const completedEvents = new Map<string, number>();
const accepted = new Map<string, JobKind>();

async function ownConfig(): Promise<Config> {
  const data = await tempDataDir();
  dirs.push(data);
  return loadConfig({
    NATS_URL: cluster.urls,
    NATS_REPLICAS: '3',
    REDIS_SENTINELS: sentinels.sentinelList,
    REDIS_SENTINEL_NAME: sentinels.name,
    STORAGE: 'nats',
    DATA_DIR: data.dir,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    ALLOW_PRIVATE_URLS: 'true',
    JOB_ACK_WAIT_SECONDS: '5',
    JOB_RETRY_DELAY_SECONDS: '1',
    RATE_LIMIT_PER_MINUTE: '0',
    RATE_LIMIT_READS_PER_MINUTE: '0',
  });
}

beforeAll(async () => {
  [cluster, sentinels, fixtures] = await Promise.all([
    startNatsCluster(3),
    startRedisSentinels(),
    startFixtureServer(),
  ]);
  const mp4 = await makeMp4({ width: 320, height: 180, seconds: 1 });
  fixtures.mount('mp4', join(mp4, '..'));
  mp4Url = `${fixtures.origin}/mp4/${basename(mp4)}`;
  scratch = await mkdtemp(join(tmpdir(), 'mj-cluster-services-'));
  for (let i = 0; i < 6; i++) {
    tones.push(await readFile(await makeTone(join(scratch, `t${i}.wav`), { hz: 300 + 50 * i, seconds: 1 })));
  }
  for (let i = 0; i < 2; i++) {
    const gateway = await startGateway(await ownConfig());
    gateways.push(gateway);
    stops.push(() => gateway.stop());
  }
  for (const start of [
    startDownloadWorker,
    startDownloadWorker,
    startNormalizeWorker,
    startNormalizeWorker,
  ]) {
    const worker = await start(await ownConfig());
    stops.push(() => worker.stop());
  }
  const janitor = await startJanitor(await ownConfig());
  stops.push(() => janitor.stop());
  nc = await connect({ servers: cluster.urls.split(','), maxReconnectAttempts: -1 });
  nc.subscribe('events.job.*.*.completed', {
    callback: (_e, m) => {
      const id = m.subject.split('.')[3] as string;
      completedEvents.set(id, (completedEvents.get(id) ?? 0) + 1);
    },
  });
  redis = new Redis({
    sentinels: sentinels.sentinelList.split(',').map((hp) => {
      const [host, port] = hp.split(':');
      return { host: host as string, port: Number(port) };
    }),
    name: sentinels.name,
  });
  // Refused while the master is down; the commands after the failover go to the new one.
  redis.on('error', () => undefined);
  objects = new NatsFileStore(nc, 3);
}, 240_000);

afterAll(async () => {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
  redis?.disconnect();
  await nc?.close();
  await Promise.all([cluster?.close(), sentinels?.close(), fixtures?.close()]);
  for (const d of dirs) await d.remove();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

type Body = Record<string, any>;

/** What a client does: retries a 503 or a dropped connection until the budget ends; any other answer is final. */
function answered(make: () => Promise<Response>, what: string): Promise<Body> {
  return waitUntil(
    what,
    async () => {
      const res = await make();
      if (res.status === 503) return null;
      const json = (await res.json()) as Body;
      if (res.status !== 202 && res.status !== 200)
        throw new Error(`${what}: ${res.status} ${JSON.stringify(json)}`);
      return json;
    },
    { timeoutMs: RECOVERY_MS, intervalMs: 300, retryErrors: true },
  );
}

async function accept(make: () => Promise<Response>, what: string): Promise<Body> {
  const body = await answered(make, what);
  accepted.set(body.id as string, body.kind as JobKind);
  return body;
}

let submissions = 0;
const gatewayFor = (n: number) => gateways[n % gateways.length] as Gateway;

function submitDownload(): Promise<Body> {
  const n = submissions++;
  return accept(
    () =>
      fetch(`${gatewayFor(n).url}/download`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ url: `${mp4Url}?n=${n}`, quality: 'best' }),
      }),
    `download ${n} to be accepted`,
  );
}

function submitNormalize(tone: number): Promise<Body> {
  const n = submissions++;
  return accept(() => {
    const form = new FormData();
    form.append('operations[]', 'convert_to_mono');
    form.append('format', 'wav');
    form.append('file', new Blob([new Uint8Array(tones[tone] as Buffer)], { type: 'audio/wav' }), 't.wav');
    return fetch(`${gatewayFor(n).url}/normalize`, { method: 'POST', body: form });
  }, `normalize ${n} to be accepted`);
}

/** Every accepted job completed; each record is read through either gateway, whichever answers. */
async function allCompleted(): Promise<Body[]> {
  return waitUntil(
    `jobs ${[...accepted.keys()].join(', ')} to complete`,
    async () => {
      const records: Body[] = [];
      for (const id of accepted.keys()) {
        const res = await fetch(`${gatewayFor(records.length).url}/jobs/${id}`);
        const body = (await res.json()) as Body;
        if (body.status === 'failed') throw new Error(`job ${id} failed: ${JSON.stringify(body.error)}`);
        if (body.status !== 'completed') return null;
        records.push(body);
      }
      return records;
    },
    { timeoutMs: RECOVERY_MS, intervalMs: 500, retryErrors: true },
  );
}

/** Both gateways serve every result: whole, and a range. */
async function servedByBoth(records: Body[]): Promise<void> {
  for (const record of records) {
    for (const gateway of gateways) {
      const url = `${gateway.url}/jobs/${record.id}/file`;
      const whole = await fetch(url);
      expect(whole.status, url).toBe(200);
      const bytes = Buffer.from(await whole.arrayBuffer());
      expect(bytes.length, url).toBe(record.result.size_bytes);
      const part = await fetch(url, { headers: { range: 'bytes=10-99' } });
      expect(part.status, url).toBe(206);
      expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(10, 100)), url).toBe(true);
    }
  }
}

function completedOnce(records: Body[]): void {
  for (const r of records) expect(completedEvents.get(r.id) ?? 0, r.id).toBeLessThanOrEqual(1);
  // The subscriber may miss an event while its own node is down, never see one twice.
  expect([...completedEvents.values()].every((n) => n === 1)).toBe(true);
}

async function tmpLeftovers(): Promise<string[]> {
  const left: string[] = [];
  for (const { dir } of dirs) {
    const top = await readdir(dir);
    // `.tmp-owner` says which process owns tmp/.
    left.push(...top.filter((n) => n !== 'tmp' && n !== '.tmp-owner').map((n) => join(dir, n)));
    left.push(...(await readdir(join(dir, 'tmp'))).map((n) => join(dir, 'tmp', n)));
  }
  return left;
}

async function names(bucket: Bucket): Promise<string[]> {
  const out: string[] = [];
  for await (const chunk of objects.names(bucket, 100)) out.push(...chunk);
  return out;
}

describe('scale-out: every service on a NATS cluster and Redis Sentinel, STORAGE=nats', () => {
  it('when the services start, then the buckets have 3 replicas like JOBS', async () => {
    const jsm = await jetstreamManager(nc);
    for (const stream of [JOBS_STREAM, ...BUCKETS.map((b) => `OBJ_${b}`)]) {
      expect((await jsm.streams.info(stream)).config.num_replicas, stream).toBe(3);
    }
  });

  it('when the node that leads JOBS is killed under submissions, then every accepted job completes once and both gateways serve it', async () => {
    const first = [submitDownload(), submitNormalize(0), submitDownload(), submitNormalize(1)];
    const leader = await cluster.leaderOf(JOBS_STREAM);
    await leader.stop();
    const during = [submitDownload(), submitNormalize(2), submitDownload()];
    await Promise.all([...first, ...during]);
    const records = await allCompleted();
    await leader.start();
    await cluster.ready(RECOVERY_MS);
    expect((await cluster.leaderOf(JOBS_STREAM)).name).not.toBe(leader.name);
    await servedByBoth(records);
    completedOnce(records);
  }, 400_000);

  it('when the Redis master is killed under submissions, then the services follow the promoted replica and no accepted job is lost', async () => {
    const before = `127.0.0.1:${sentinels.master.port}`;
    const first = [submitDownload(), submitNormalize(3)];
    await Promise.all(first);
    await sentinels.master.stop();
    const during = [submitDownload(), submitNormalize(4), submitNormalize(5)];
    await waitUntil(
      'the sentinels to promote the replica',
      () => sentinels.currentMaster().catch(() => before),
      {
        timeoutMs: RECOVERY_MS,
        intervalMs: 200,
        until: (m) => m !== before,
      },
    );
    await Promise.all(during);
    const records = await allCompleted();
    expect(records).toHaveLength(accepted.size);
    await servedByBoth(records);
    completedOnce(records);
    await waitUntil('no service to keep anything in its DATA_DIR but an empty tmp/', async () =>
      (await tmpLeftovers()).length === 0 ? true : null,
    );
  }, 400_000);

  it('when a job expires, then a sweep removes its objects and both gateways stop serving it', async () => {
    const records = await allCompleted();
    const expired = records.find((r) => r.kind === 'download') as Body;
    const key = jobKey('download', expired.id as string);
    // Time passing: the record says it expired a minute ago, and the index agrees.
    const past = Date.now() - 60_000;
    const raw = JSON.parse((await redis.get(key)) as string) as Body;
    await redis.set(key, JSON.stringify({ ...raw, expires_at: new Date(past).toISOString() }), 'PX', 60_000);
    await redis.zadd(EXPIRY_INDEX, past, key);
    expect(await names('downloads')).toContain(expired.result.file);

    const sweep = await answered(
      () => fetch(`${gatewayFor(0).url}/admin/cleanup`, { method: 'POST' }),
      'a sweep',
    );
    expect(sweep.removed.download).toBeGreaterThanOrEqual(1);
    expect(await names('downloads')).not.toContain(expired.result.file);
    for (const gateway of gateways) {
      expect((await fetch(`${gateway.url}/jobs/${expired.id}/file`)).status).toBe(404);
    }
    const others = records.filter((r) => r.id !== expired.id);
    await servedByBoth(others.slice(0, 2));
    expect(await tmpLeftovers()).toEqual([]);
  }, 300_000);
});
