/**
 * `npm run chaos`: the fault and abuse scenarios of issue 5, end to end, under a steady load.
 *
 * Starts its own nats-server, redis-server (append-only, as in production), a local fixture
 * HTTP server and the services as child processes, all on loopback. While a bounded stream of
 * submissions and lookups runs, it restarts NATS and Redis, SIGKILLs and SIGTERMs workers, the
 * janitor and the gateway, and sends a few hundred malformed requests. Then it waits for every
 * accepted job, scans every record, index entry and file (`record-scan.ts`), and prints one
 * table. Exit code 1 if a job was lost, a 5xx other than a 503 with Retry-After (a backend
 * down) was seen, or a record was stuck or anything orphaned once the load had settled.
 *
 * `npm run chaos -- --cluster`: the same on the scaled-out backends, a 3-node NATS cluster
 * (R3) and Redis with a replica and three sentinels, with STORAGE=nats and every service on
 * its own DATA_DIR; instead of restarting NATS and Redis it kills the NATS node that leads
 * JOBS and then the Redis master.
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import {
  JOBS_STREAM,
  LocalFileStore,
  NatsFileStore,
  createRedis,
  type FileStore,
  type Redis,
} from '@media-jobs/libs';
import {
  NO_RATE_LIMITS,
  freePort,
  makeMp4,
  makeTone,
  spawnService,
  startFixtureServer,
  startNatsCluster,
  startPlatform,
  startRedisSentinels,
  waitForJobs,
  type FixtureServer,
  type ServiceProcess,
} from '@media-jobs/libs/testing';
import { describeScan, scanRecords, type RecordScan } from './record-scan.js';

/** Requests a second, of which JOBS_PER_SECOND are new jobs: every NORMALIZE_EVERY-th an upload to normalize, the rest downloads. */
const REQUESTS_PER_SECOND = 20;
const JOBS_PER_SECOND = 1.5;
const NORMALIZE_EVERY = 3;
/** A bound on open requests, so a stalled gateway cannot pile up sockets. */
const MAX_IN_FLIGHT = 64;
const WORKER_KILLS = 10;
const BAD_INPUTS = 300;
const CLUSTER = process.argv.includes('--cluster');
/**
 * With the cluster every write is replicated three times on the same small machine, and jobs
 * retried through the Redis failover wait out their backoff: they take longer to drain.
 */
const DRAIN_TIMEOUT_MS = CLUSTER ? 240_000 : 90_000;
/**
 * How long the final scan waits for a clean result after the drain: jobs nobody accepted (a
 * 202 lost with a killed connection) may still run, and a lost request is queued again by the
 * reconciler within about two ack waits (JOB_ACK_WAIT_SECONDS is 3 here).
 */
const SETTLE_TIMEOUT_MS = 30_000;

const started = Date.now();
const clock = () => {
  const s = Math.round((Date.now() - started) / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
};
const say = (line: string) => process.stdout.write(`[chaos ${clock()}] ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// --- the system under test ---------------------------------------------------------------

/** Where the services' NATS, Redis and files are, and the faults that hit them. */
interface Backends {
  readonly label: string;
  /** A scratch folder for fixtures. */
  readonly scratch: string;
  /** The environment of the service in `slot` (its own DATA_DIR with the cluster). */
  env(service: string, slot: number): Record<string, string>;
  /** The faults to NATS and Redis, under load. */
  serverFaults(stack: Stack, load: Load): Promise<Fault[]>;
  redis(): Redis;
  /** Where results and uploads are, read as the services see them. */
  files(): Promise<{ store: FileStore; close(): Promise<void> }>;
  /** Every service's `tmp/`. */
  tmpDirs(): Promise<string[]>;
  close(): Promise<void>;
}

interface Stack {
  backends: Backends;
  fixtures: FixtureServer;
  /** A short WAV; each upload changes its last sample, so each is a new normalize job. */
  audio: Buffer;
  gatewayUrl: string;
  gateway: ServiceProcess;
  downloadWorkers: ServiceProcess[];
  others: ServiceProcess[];
}

const READY_LINE: Record<string, RegExp> = {
  gateway: /Gateway listening/,
  'download-worker': /Download worker ready/,
  'normalize-worker': /Normalize worker ready/,
  janitor: /Janitor started/,
};

async function startService(stack: Pick<Stack, 'backends'>, name: string, slot = 0): Promise<ServiceProcess> {
  const proc = spawnService(name, stack.backends.env(name, slot));
  await proc.waitFor(READY_LINE[name]!, 60_000);
  return proc;
}

/** What every service of the run gets besides its backends. */
function chaosEnv(port: number): Record<string, string> {
  return {
    PORT: String(port),
    LOG_LEVEL: 'info',
    JOB_ACK_WAIT_SECONDS: '3',
    JOB_MAX_DELIVER: '20',
    JOB_RETRY_DELAY_SECONDS: '1',
    DOWNLOAD_CONCURRENCY: '3',
    SHUTDOWN_GRACE_SECONDS: '5',
    // One loopback client drives all the load; per-client limits would refuse most of it.
    ...NO_RATE_LIMITS,
  };
}

/** One nats-server and one redis-server (append-only), restarted as faults; one shared DATA_DIR. */
async function localBackends(port: number): Promise<Backends> {
  const platform = await startPlatform({ redis: { appendonly: true } });
  const env = platform.env(chaosEnv(port));
  return {
    label: 'nats-server and redis-server, STORAGE=local',
    scratch: platform.dataDir,
    env: () => env,
    async serverFaults(stack, load) {
      const faults = [await restartServer(stack, 'nats', () => platform.nats, load)];
      await sleep(4000);
      faults.push(await restartServer(stack, 'redis', () => platform.redis, load));
      return faults;
    },
    redis: () => createRedis({ redisUrl: platform.redis.url }),
    files: () =>
      Promise.resolve({ store: new LocalFileStore(platform.dataDir), close: () => Promise.resolve() }),
    tmpDirs: () => Promise.resolve([join(platform.dataDir, 'tmp')]),
    close: () => platform.close(),
  };
}

/** A 3-node NATS cluster and Redis Sentinel; STORAGE=nats and one DATA_DIR per service process slot. */
async function clusterBackends(port: number): Promise<Backends> {
  const [cluster, sentinels] = await Promise.all([startNatsCluster(3), startRedisSentinels()]);
  const root = await mkdtemp(join(tmpdir(), 'mj-chaos-cluster-'));
  const redisConfig = {
    redisUrl: `redis://127.0.0.1:${sentinels.master.port}`,
    redisSentinels: sentinels.sentinelList.split(',').map((hp) => {
      const [host, p] = hp.split(':');
      return { host: host as string, port: Number(p) };
    }),
    redisSentinelName: sentinels.name,
  };
  return {
    label: '3-node NATS cluster (R3) and Redis Sentinel, STORAGE=nats, a DATA_DIR per service',
    scratch: root,
    env: (service, slot) => ({
      NATS_URL: cluster.urls,
      NATS_REPLICAS: '3',
      REDIS_URL: redisConfig.redisUrl,
      REDIS_SENTINELS: sentinels.sentinelList,
      REDIS_SENTINEL_NAME: sentinels.name,
      STORAGE: 'nats',
      DATA_DIR: join(root, `${service}-${slot}`),
      HOST: '127.0.0.1',
      ALLOW_PRIVATE_URLS: 'true',
      ...chaosEnv(service === 'gateway' ? port : 0),
    }),
    async serverFaults(stack, load) {
      const faults = [await killJobsLeader(stack, cluster, load)];
      await sleep(4000);
      faults.push(await killRedisMaster(stack, sentinels, load));
      return faults;
    },
    redis: () => createRedis(redisConfig),
    async files() {
      const nc = await connect({ servers: cluster.urls.split(','), maxReconnectAttempts: -1 });
      return { store: new NatsFileStore(nc, 3), close: () => nc.close() };
    },
    async tmpDirs() {
      return (await readdir(root)).filter((n) => n !== 'chaos-tone.wav').map((n) => join(root, n, 'tmp'));
    },
    async close() {
      await Promise.all([cluster.close(), sentinels.close()]);
      await rm(root, { recursive: true, force: true });
    },
  };
}

async function startStack(): Promise<Stack> {
  const port = await freePort();
  const backends = CLUSTER ? await clusterBackends(port) : await localBackends(port);
  const fixtures = await startFixtureServer();
  fixtures.mount('mp4', join(await makeMp4({ width: 320, height: 180, seconds: 1 }), '..'));
  const wav = join(backends.scratch, 'chaos-tone.wav');
  await makeTone(wav, { seconds: 2 });
  const audio = await readFile(wav);
  const partial = { backends };
  // On a fresh cluster the first service creates the R3 streams and buckets; five at once
  // could outlast the JetStream API timeout on a small machine.
  const first = CLUSTER ? await startService(partial, 'gateway') : null;
  const [gateway, w1, w2, normalize, janitor] = await Promise.all([
    first ?? startService(partial, 'gateway'),
    startService(partial, 'download-worker', 0),
    startService(partial, 'download-worker', 1),
    startService(partial, 'normalize-worker'),
    startService(partial, 'janitor'),
  ]);
  return {
    backends,
    fixtures,
    audio,
    gatewayUrl: `http://127.0.0.1:${port}`,
    gateway: gateway,
    downloadWorkers: [w1, w2],
    others: [normalize, janitor],
  };
}

// --- load --------------------------------------------------------------------------------

interface Tally {
  requests: number;
  byStatus: Map<number, number>;
  /** Connection refused or reset: only expected while the gateway restarts. */
  networkErrors: number;
  unavailableWithRetryAfter: number;
  maxUnavailableMs: number;
  unexpected5xx: string[];
  skipped: number;
}

const newTally = (): Tally => ({
  requests: 0,
  byStatus: new Map(),
  networkErrors: 0,
  unavailableWithRetryAfter: 0,
  maxUnavailableMs: 0,
  unexpected5xx: [],
  skipped: 0,
});

class Load {
  readonly tally = newTally();
  readonly accepted = new Set<string>();
  private readonly urls: string[] = [];
  private inFlight = 0;
  private tick = 0;
  private timer: NodeJS.Timeout | undefined;
  private jobsSeq = 0;

  constructor(private readonly stack: Stack) {}

  start(): void {
    const everyNth = Math.max(1, Math.round(REQUESTS_PER_SECOND / JOBS_PER_SECOND));
    this.timer = setInterval(() => {
      if (this.inFlight >= MAX_IN_FLIGHT) {
        this.tally.skipped++;
        return;
      }
      const n = this.tick++;
      if (n % everyNth === 0) void this.submitNew();
      else if (n % 3 === 0 && this.urls.length > 0) void this.submitAgain();
      else if (n % 3 === 1 && this.accepted.size > 0) void this.lookup();
      else void this.send('GET', '/health');
    }, 1000 / REQUESTS_PER_SECOND);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Stops and waits for the requests still open, so no job is accepted after the count. */
  async settle(): Promise<void> {
    this.stop();
    while (this.inFlight > 0) await sleep(50);
  }

  private async submitNew(): Promise<void> {
    const seq = this.jobsSeq++;
    if (seq % NORMALIZE_EVERY === NORMALIZE_EVERY - 1) return this.uploadNew(seq);
    const url = `${this.stack.fixtures.origin}/mp4/video.mp4?chaos=${seq}`;
    const res = await this.send('POST', '/download', { json: { url, quality: 'best' } });
    if (res?.status === 202 && typeof res.body?.id === 'string') {
      this.accepted.add(res.body.id);
      this.urls.push(url);
    }
  }

  private async uploadNew(seq: number): Promise<void> {
    const bytes = Buffer.from(this.stack.audio);
    bytes.writeInt16LE(seq % 32_768, bytes.length - 2);
    const form = new FormData();
    form.append('operations[]', 'normalize_volume');
    form.append('file', new Blob([new Uint8Array(bytes)], { type: 'audio/wav' }), `tone-${seq}.wav`);
    const res = await this.send('POST', '/normalize', { form });
    if (res?.status === 202 && typeof res.body?.id === 'string') this.accepted.add(res.body.id);
  }

  /** A repeat of an accepted URL: a cache hit (200), never a second job. */
  private async submitAgain(): Promise<void> {
    const url = this.urls[Math.floor(Math.random() * this.urls.length)]!;
    await this.send('POST', '/download', { json: { url, quality: 'best' } });
  }

  private async lookup(): Promise<void> {
    const ids = [...this.accepted];
    await this.send('GET', `/jobs/${ids[Math.floor(Math.random() * ids.length)]!}`);
  }

  private async send(
    method: string,
    path: string,
    payload: { json: unknown } | { form: FormData } | undefined = undefined,
  ): Promise<{ status: number; body: { id?: unknown } | null } | null> {
    this.inFlight++;
    this.tally.requests++;
    const t0 = performance.now();
    try {
      const res = await fetch(`${this.stack.gatewayUrl}${path}`, {
        method,
        headers: payload && 'json' in payload ? { 'content-type': 'application/json' } : {},
        body: payload && 'json' in payload ? JSON.stringify(payload.json) : payload?.form,
        signal: AbortSignal.timeout(15_000),
      });
      const body = (await res.json().catch(() => null)) as { id?: unknown } | null;
      record(
        this.tally,
        res.status,
        res.headers.get('retry-after'),
        performance.now() - t0,
        `${method} ${path}`,
      );
      return { status: res.status, body };
    } catch {
      this.tally.networkErrors++;
      return null;
    } finally {
      this.inFlight--;
    }
  }
}

function record(tally: Tally, status: number, retryAfter: string | null, ms: number, what: string): void {
  tally.byStatus.set(status, (tally.byStatus.get(status) ?? 0) + 1);
  if (status === 503 && retryAfter) {
    tally.unavailableWithRetryAfter++;
    tally.maxUnavailableMs = Math.max(tally.maxUnavailableMs, ms);
  } else if (status >= 500) {
    tally.unexpected5xx.push(`${status} ${what}`);
  }
}

// --- faults ------------------------------------------------------------------------------

interface Fault {
  name: string;
  survived: boolean;
  note: string;
}

async function waitReady(url: string, timeoutMs = 30_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await fetch(`${url}/ready`, { signal: AbortSignal.timeout(2000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return true;
    await sleep(200);
  }
  return false;
}

async function restartServer(
  stack: Stack,
  name: 'nats' | 'redis',
  get: () => { stop(): Promise<void>; start(): Promise<void> },
  load: Load,
): Promise<Fault> {
  const server = get();
  const before = load.tally.unavailableWithRetryAfter;
  await server.stop();
  say(`${name}: stopped; load continues for 4 s`);
  await sleep(4000);
  const refused = load.tally.unavailableWithRetryAfter - before;
  await server.start();
  const ready = await waitReady(stack.gatewayUrl);
  say(`${name}: started again; gateway ready: ${ready}; 503s while down: ${refused}`);
  return { name: `${name} stop + restart`, survived: ready, note: `${refused} × 503 while down` };
}

/** Kills the cluster node that leads JOBS, keeps the load on, then starts it again. */
async function killJobsLeader(
  stack: Stack,
  cluster: Awaited<ReturnType<typeof startNatsCluster>>,
  load: Load,
): Promise<Fault> {
  const leader = await cluster.leaderOf(JOBS_STREAM);
  const before = load.tally.unavailableWithRetryAfter;
  await leader.stop();
  say(`nats: node ${leader.name}, leader of JOBS, killed; load continues for 6 s`);
  await sleep(6000);
  const next = await cluster.leaderOf(JOBS_STREAM).catch(() => null);
  const refused = load.tally.unavailableWithRetryAfter - before;
  await leader.start();
  const ready = await waitReady(stack.gatewayUrl, 60_000);
  say(
    `nats: ${leader.name} started again; JOBS now led by ${next?.name ?? 'nobody'}; gateway ready: ${ready}`,
  );
  return {
    name: 'NATS node leading JOBS killed',
    survived: ready && next !== null && next.name !== leader.name,
    note: `JOBS moved ${leader.name} → ${next?.name ?? '?'}; ${refused} × 503 meanwhile`,
  };
}

/** Kills the Redis master; the sentinels promote the replica; the old master comes back as a replica. */
async function killRedisMaster(
  stack: Stack,
  sentinels: Awaited<ReturnType<typeof startRedisSentinels>>,
  load: Load,
): Promise<Fault> {
  const address = await sentinels.currentMaster();
  const victim = [sentinels.master, sentinels.replica].find((s) => address.endsWith(`:${s.port}`));
  if (!victim) return { name: 'Redis master killed', survived: false, note: `unknown master ${address}` };
  const before = load.tally.unavailableWithRetryAfter;
  const t0 = Date.now();
  await victim.stop();
  say(`redis: master ${address} killed; waiting for the sentinels to promote the replica`);
  let promoted: string | null = null;
  while (Date.now() - t0 < 60_000 && promoted === null) {
    const now = await sentinels.currentMaster().catch(() => address);
    if (now !== address) promoted = now;
    else await sleep(200);
  }
  const failoverMs = Date.now() - t0;
  const refused = load.tally.unavailableWithRetryAfter - before;
  await victim.start();
  const ready = await waitReady(stack.gatewayUrl, 60_000);
  say(`redis: ${promoted ?? 'no replica'} promoted in ${failoverMs} ms; gateway ready: ${ready}`);
  return {
    name: 'Redis master killed',
    survived: ready && promoted !== null,
    note: `failover in ${(failoverMs / 1000).toFixed(1)} s; ${refused} × 503 meanwhile`,
  };
}

async function killWorkers(stack: Stack): Promise<Fault[]> {
  const faults: Fault[] = [];
  for (let k = 0; k < WORKER_KILLS; k++) {
    const i = k % stack.downloadWorkers.length;
    const victim = stack.downloadWorkers[i]!;
    const midJob = count(victim.output(), 'Job started') > count(victim.output(), 'Job completed');
    await victim.stop('SIGKILL');
    stack.downloadWorkers[i] = spawnService('download-worker', stack.backends.env('download-worker', i));
    faults.push({ name: 'download-worker SIGKILL', survived: true, note: midJob ? 'mid-job' : 'idle' });
    await sleep(1500);
  }
  // A kill counts as survived when its replacement came up and (checked at the end) no job was lost.
  const ready = await Promise.all(
    stack.downloadWorkers.map((w) =>
      w.waitFor(READY_LINE['download-worker']!, 30_000).then(
        () => true,
        () => false,
      ),
    ),
  );
  const allUp = ready.every(Boolean);
  for (const f of faults) f.survived = allUp;
  say(
    `download-worker: ${WORKER_KILLS} SIGKILLs (${faults.filter((f) => f.note === 'mid-job').length} mid-job); replacements ready: ${allUp}`,
  );
  return faults;
}

const count = (text: string, needle: string) => text.split(needle).length - 1;

/** SIGTERM, expect exit 0 within the grace period, start a replacement. */
async function terminate(
  stack: Stack,
  name: string,
  get: () => ServiceProcess,
  set: (p: ServiceProcess) => void,
): Promise<Fault> {
  const t0 = Date.now();
  const code = await get().stop('SIGTERM');
  const ms = Date.now() - t0;
  const replacement = await startService(stack, name).catch(() => null);
  if (replacement) set(replacement);
  const survived =
    code === 0 && replacement !== null && (name !== 'gateway' || (await waitReady(stack.gatewayUrl)));
  say(`${name}: SIGTERM → exit ${code} in ${ms} ms; replacement ready: ${replacement !== null}`);
  return { name: `${name} SIGTERM`, survived, note: `exit ${code} in ${ms} ms` };
}

// --- bad input ---------------------------------------------------------------------------

/** Malformed requests of every kind the routes must refuse with a 4xx. */
function badRequests(
  origin: string,
): { method: string; path: string; headers?: Record<string, string>; body?: string }[] {
  const json = { 'content-type': 'application/json' };
  const bodies = [
    '{',
    '[]',
    'null',
    '"x"',
    '{"url":1}',
    '{"url":"ftp://example.com/a"}',
    '{"url":"http://"}',
    '{"url":"javascript:alert(1)"}',
    `{"url":"${origin}/mp4/video.mp4","quality":"8k"}`,
    `{"url":"${origin}/mp4/video.mp4","quality":{"$gt":""}}`,
    `{"url":"http://x/${'a'.repeat(20_000)}"}`,
    '{"url":"http://\u0000/"}',
    `{"__proto__":{"polluted":true},"url":"${origin}/mp4/video.mp4","quality":"bogus"}`,
    '['.repeat(5000),
    'x'.repeat(40_000),
  ];
  const ids = [
    '..%2F..%2Fetc%2Fpasswd',
    '%00',
    'a'.repeat(300),
    '%E0%A4%A',
    'job%20id',
    '%2e%2e',
    'ok_id;rm',
    '\u00e9t\u00e9',
  ];
  const out: { method: string; path: string; headers?: Record<string, string>; body?: string }[] = [];
  for (const body of bodies) {
    out.push({ method: 'POST', path: '/download', headers: json, body });
    out.push({ method: 'POST', path: '/download', headers: { 'content-type': 'text/plain' }, body });
  }
  for (const id of ids) {
    out.push({ method: 'GET', path: `/jobs/${id}` });
    out.push({ method: 'GET', path: `/jobs/${id}/file` });
    out.push({ method: 'DELETE', path: `/jobs/${id}` });
    out.push({ method: 'GET', path: `/jobs/${id}/events` });
  }
  for (const q of [
    'kind=bogus',
    'status=weird',
    'limit=-1',
    'limit=abc',
    'limit=1e9',
    'cursor=%ZZ',
    'kind[]=a&kind[]=b',
  ]) {
    out.push({ method: 'GET', path: `/jobs?${q}` });
  }
  const multipart = { 'content-type': 'multipart/form-data; boundary=XYZ' };
  out.push({ method: 'POST', path: '/normalize', headers: multipart, body: '--XYZ\r\nnot a part' });
  out.push({
    method: 'POST',
    path: '/normalize',
    headers: multipart,
    body: '--XYZ\r\nContent-Disposition: form-data; name="operations[]"\r\n\r\nmake_it_pop\r\n--XYZ--\r\n',
  });
  out.push({
    method: 'POST',
    path: '/normalize',
    headers: { 'content-type': 'multipart/form-data' },
    body: 'x',
  });
  out.push({
    method: 'POST',
    path: '/normalize',
    headers: json,
    body: '{"operations":["normalize_volume"]}',
  });
  out.push({ method: 'PUT', path: '/download', headers: json, body: '{}' });
  out.push({ method: 'PATCH', path: '/jobs/abc' });
  out.push({ method: 'POST', path: '/admin/cleanup', headers: { authorization: 'Bearer nope' } });
  return out;
}

/** Sends them in batches; returns how many were sent and how many got a 5xx. */
async function sendBadInputs(stack: Stack, tally: Tally): Promise<{ sent: number; serverErrors: number }> {
  let serverErrors = 0;
  const catalogue = badRequests(stack.fixtures.origin);
  let sent = 0;
  while (sent < BAD_INPUTS) {
    const batch = Array.from(
      { length: Math.min(20, BAD_INPUTS - sent) },
      (_, i) => catalogue[(sent + i) % catalogue.length]!,
    );
    sent += batch.length;
    await Promise.all(
      batch.map(async (r) => {
        tally.requests++;
        try {
          const res = await fetch(`${stack.gatewayUrl}${r.path}`, {
            method: r.method,
            headers: r.headers,
            body: r.body,
            signal: AbortSignal.timeout(10_000),
          });
          await res.arrayBuffer().catch(() => undefined);
          if (res.status >= 500) serverErrors++;
          record(tally, res.status, res.headers.get('retry-after'), 0, `${r.method} ${r.path.slice(0, 60)}`);
        } catch {
          tally.networkErrors++;
        }
      }),
    );
  }
  const alive = await fetch(`${stack.gatewayUrl}/health`).then(
    (r) => r.ok,
    () => false,
  );
  say(`bad inputs: ${sent} sent, ${serverErrors} got a 5xx; gateway still answers: ${alive}`);
  return { sent, serverErrors };
}

// --- report ------------------------------------------------------------------------------

function table(rows: [string, string][]): string {
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  const line = (l: string, m: string, r: string) => `${l}${'─'.repeat(w0 + 2)}${m}${'─'.repeat(w1 + 2)}${r}`;
  return [
    line('┌', '┬', '┐'),
    ...rows.map(([a, b]) => `│ ${a.padEnd(w0)} │ ${b.padEnd(w1)} │`),
    line('└', '┴', '┘'),
  ].join('\n');
}

interface Results {
  load: Load;
  faults: Fault[];
  badInputs: { sent: number; serverErrors: number };
  loadSeconds: number;
  restartRefusals: number;
  completed: number;
  failed: number;
  outputs: number;
  leftovers: number;
  scan: RecordScan;
}

/** Prints the one table; 0 when nothing was lost and every fault was survived. */
function report(results: Results): number {
  const {
    load,
    faults,
    badInputs,
    loadSeconds,
    restartRefusals,
    completed,
    failed,
    outputs,
    leftovers,
    scan,
  } = results;
  const lost = load.accepted.size - completed;
  const uploads = [...load.accepted].filter((id) => !id.endsWith('_best')).length;
  const t = load.tally;
  const survived = faults.filter((f) => f.survived).length;
  const kinds = new Map<string, number>();
  for (const f of faults) kinds.set(f.name, (kinds.get(f.name) ?? 0) + 1);
  const other5xx = t.unexpected5xx.length;
  const statuses = [...t.byStatus.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([s, n]) => `${s}×${n}`)
    .join(' ');
  const rows: [string, string][] = [
    [
      'load held',
      `${((t.requests - badInputs.sent) / loadSeconds).toFixed(1)} requests/s, ${(load.accepted.size / loadSeconds).toFixed(2)} new jobs/s accepted, over ${loadSeconds.toFixed(0)} s of faults`,
    ],
    ['faults injected / survived', `${faults.length} / ${survived}`],
    ...[...kinds.entries()].map(([name, n]): [string, string] => {
      const these = faults.filter((f) => f.name === name);
      const notes = n === 1 ? these[0]!.note : `${these.filter((f) => f.note === 'mid-job').length} mid-job`;
      return [`  ${name}`, `${n} (${these.filter((f) => f.survived).length} survived; ${notes})`];
    }),
    ['bad inputs tried', `${badInputs.sent} malformed requests, ${badInputs.serverErrors} answered 5xx`],
    [
      '5xx seen',
      `${t.unavailableWithRetryAfter} × 503 + Retry-After while a backend was down (slowest ${t.maxUnavailableMs.toFixed(0)} ms); ${other5xx} other`,
    ],
    ['connections refused', `${t.networkErrors} (${restartRefusals} during the gateway restart)`],
    ['responses by status', statuses],
    [
      'jobs accepted / completed / lost',
      `${load.accepted.size} / ${completed} / ${lost}${failed ? ` (${failed} failed)` : ''} (${uploads} of them normalize uploads)`,
    ],
    [
      'output files / tmp leftovers',
      `${outputs} (one per completed job: ${outputs === completed}) / ${leftovers}`,
    ],
    ['records stuck or orphaned', describeScan(scan)],
  ];
  process.stdout.write(`\n${table(rows)}\n`);
  if (other5xx > 0) process.stdout.write(`unexpected 5xx: ${t.unexpected5xx.slice(0, 10).join(', ')}\n`);
  for (const o of scan.offenders) process.stdout.write(`${o.what}: ${o.subject}: ${o.reason}\n`);
  const ok =
    lost === 0 &&
    other5xx === 0 &&
    survived === faults.length &&
    outputs === completed &&
    leftovers === 0 &&
    scan.offenders.length === 0;
  return ok ? 0 : 1;
}

/** Scans until nothing is stuck or orphaned, or `SETTLE_TIMEOUT_MS` passed; the last scan. */
async function settledScan(stack: Stack): Promise<RecordScan> {
  const redis: Redis = stack.backends.redis();
  const files = await stack.backends.files();
  try {
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    for (;;) {
      const scan = await scanRecords(redis, files.store);
      if (scan.offenders.length === 0 || Date.now() >= deadline) {
        say(`final scan: ${describeScan(scan)}`);
        return scan;
      }
      await sleep(1000);
    }
  } finally {
    redis.disconnect();
    await files.close();
  }
}

/** Result files stored, and entries left in every service's `tmp/`. */
async function countFiles(stack: Stack): Promise<{ outputs: number; leftovers: number }> {
  const files = await stack.backends.files();
  try {
    let outputs = 0;
    for (const bucket of ['downloads', 'normalized'] as const) {
      for await (const names of files.store.names(bucket, 1000)) outputs += names.length;
    }
    let leftovers = 0;
    for (const dir of await stack.backends.tmpDirs())
      leftovers += (await readdir(dir).catch(() => [])).length;
    return { outputs, leftovers };
  } finally {
    await files.close();
  }
}

async function main(): Promise<number> {
  say(
    CLUSTER
      ? 'starting a 3-node NATS cluster, Redis with a replica and three sentinels, fixtures and the services'
      : 'starting nats-server, redis-server (append-only), fixtures and the services',
  );
  const stack = await startStack();
  say(`backends: ${stack.backends.label}`);
  const load = new Load(stack);
  const faults: Fault[] = [];
  let badInputs = { sent: 0, serverErrors: 0 };
  let loadSeconds = 0;
  const progress = setInterval(() => {
    const t = load.tally;
    say(
      `load: ${t.requests} requests, ${load.accepted.size} jobs accepted, ${t.unavailableWithRetryAfter} × 503, ${t.networkErrors} connection errors`,
    );
  }, 10_000);
  try {
    const loadStarted = Date.now();
    load.start();
    say(`steady load: ${REQUESTS_PER_SECOND} requests/s, ${JOBS_PER_SECOND} new jobs/s`);
    await sleep(8000);
    faults.push(...(await stack.backends.serverFaults(stack, load)));
    await sleep(4000);
    faults.push(...(await killWorkers(stack)));
    // Every service once, the gateway last: its restart is the only fault clients can see.
    const targets: [string, () => ServiceProcess, (p: ServiceProcess) => void][] = [
      ['download-worker', () => stack.downloadWorkers[0]!, (p) => (stack.downloadWorkers[0] = p)],
      ['normalize-worker', () => stack.others[0]!, (p) => (stack.others[0] = p)],
      ['janitor', () => stack.others[1]!, (p) => (stack.others[1] = p)],
      ['gateway', () => stack.gateway, (p) => (stack.gateway = p)],
    ];
    const errorsBefore = load.tally.networkErrors;
    for (const [name, get, set] of targets) faults.push(await terminate(stack, name, get, set));
    const restartRefusals = load.tally.networkErrors - errorsBefore;
    badInputs = await sendBadInputs(stack, load.tally);
    await sleep(3000);
    await load.settle();
    loadSeconds = (Date.now() - loadStarted) / 1000;

    say(`draining: waiting for ${load.accepted.size} accepted jobs (up to ${DRAIN_TIMEOUT_MS / 1000} s)`);
    const drainProgress = setInterval(() => say('draining ...'), 10_000);
    const finished = await waitForJobs(stack.gatewayUrl, load.accepted, DRAIN_TIMEOUT_MS);
    clearInterval(drainProgress);
    const records = [...finished.values()];
    const completed = records.filter((r) => r?.status === 'completed').length;
    const failed = records.filter((r) => r?.status === 'failed').length;
    const { outputs, leftovers } = await countFiles(stack);
    const scan = await settledScan(stack);

    return report({
      load,
      faults,
      badInputs,
      loadSeconds,
      restartRefusals,
      completed,
      failed,
      outputs,
      leftovers,
      scan,
    });
  } finally {
    clearInterval(progress);
    load.stop();
    await Promise.all(
      [stack.gateway, ...stack.downloadWorkers, ...stack.others].map((p) => p.stop('SIGTERM')),
    );
    await stack.fixtures.close();
    await stack.backends.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(
      `chaos failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
