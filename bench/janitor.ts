/**
 * `npm run bench:janitor`: the janitor's sweep against the seed's method, side by side.
 *
 * Loads 1,000,000 live records and 10,000 expired ones (7,000 downloads, 3,000 normalize jobs
 * with their uploads: 13,000 files) into a redis-server of its own, plus 5,000 live jobs with
 * files that must survive. Then it times
 * - the seed's method: SCAN every key, GET each record (pipelined per SCAN page), compare
 *   `expires_at`, delete the expired record and the files it names;
 * - the janitor: a real janitor process (`startJanitor`), whose start-up sweep reads
 *   `jobs:expiry` up to now in batches; its peak memory is sampled in that process.
 * Knobs for quick experiments (the quoted figures use neither): `BENCH_LIVE` (live records),
 * `BENCH_FILE_BATCH` (the janitor's `fileBatchSize`).
 * The expired records still exist in Redis (their key TTL is a little longer than
 * `expires_at`), so the seed's method can find them at all: it cannot see keys Redis expired.
 */
import { spawn } from 'node:child_process';
import { mkdir, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import {
  EXPIRY_INDEX,
  LAST_SWEEP_KEY,
  createStorage,
  loadConfig,
  jobKey,
  uploadRefsKey,
  type JobKind,
  type Storage,
} from '@media-jobs/libs';
import { REPO_ROOT, startNats, startRedis, tempDataDir } from '@media-jobs/libs/testing';

/** `BENCH_LIVE` shrinks the live set for a quick run; the figures quoted use the default. */
const LIVE = Number(process.env.BENCH_LIVE ?? 1_000_000);
const LIVE_WITH_FILES = Math.min(5_000, LIVE);
const EXPIRED = { download: 7_000, normalize: 3_000 };
const FILE_BYTES = 4096;
const HOUR = 3_600_000;

function record(kind: JobKind, id: string, expiresMs: number, files: string[]): string {
  const at = new Date(expiresMs - 24 * HOUR).toISOString();
  return JSON.stringify({
    id,
    kind,
    status: 'completed',
    progress: 100,
    created_at: at,
    updated_at: at,
    expires_at: new Date(expiresMs).toISOString(),
    request:
      kind === 'download'
        ? { url: `https://www.youtube.com/watch?v=${id.slice(0, 11)}`, quality: '720p' }
        : { operations: ['normalize_volume'] },
    attempts: 1,
    result: { files, size: FILE_BYTES, duration: 212.4, format: kind === 'download' ? 'mp4' : 'wav' },
  });
}

const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');
const liveId = (i: number) =>
  i % 5 === 0
    ? { kind: 'normalize' as const, id: `${hex(i, 16)}_mono` }
    : { kind: 'download' as const, id: `L${hex(i, 10)}_720p` };

async function loadLive(redis: Redis, storage: Storage): Promise<void> {
  const expires = Date.now() + 24 * HOUR;
  const started = Date.now();
  for (let start = 0; start < LIVE; start += 10_000) {
    const pipe = redis.pipeline();
    const writes: Promise<void>[] = [];
    for (let i = start; i < start + 10_000; i++) {
      const { kind, id } = liveId(i);
      const file = kind === 'download' ? `downloads/${id}.mp4` : `normalized/${id}.wav`;
      pipe.set(jobKey(kind, id), record(kind, id, expires, [file]), 'PXAT', expires);
      pipe.zadd(EXPIRY_INDEX, expires, jobKey(kind, id));
      if (i < LIVE_WITH_FILES) writes.push(writeFile(join(storage.root, file), Buffer.alloc(FILE_BYTES)));
    }
    await Promise.all([pipe.exec(), ...writes]);
    const line = `  live records: ${start + 10_000} / ${LIVE} (${((Date.now() - started) / 1000).toFixed(1)} s)`;
    // In a terminal the line updates in place; in a log, one line per 100,000 records.
    if (process.stdout.isTTY) process.stdout.write(`\r${line}`);
    else if ((start + 10_000) % 100_000 === 0) process.stdout.write(`${line}\n`);
  }
  if (process.stdout.isTTY) process.stdout.write('\n');
}

/** 10,000 jobs whose `expires_at` passed an hour ago, each with its files (normalize: result + upload). */
async function loadExpired(redis: Redis, storage: Storage): Promise<void> {
  const expires = Date.now() - HOUR;
  const pipe = redis.pipeline();
  const files: string[] = [];
  for (const kind of ['download', 'normalize'] as const) {
    for (let i = 0; i < EXPIRED[kind]; i++) {
      const hex16 = hex(0xe0000000 + i, 16);
      const id = kind === 'download' ? `X${hex(i, 10)}_best` : `${hex16}_mono`;
      const own =
        kind === 'download'
          ? [`downloads/${id}.mp4`]
          : [`normalized/${id}.wav`, `uploads/${hex16}${'0'.repeat(48)}.wav`];
      files.push(...own);
      // Key TTL 10 min past expires_at: still readable, as the seed's method needs.
      pipe.set(jobKey(kind, id), record(kind, id, expires, own), 'PX', 10 * 60_000 + HOUR);
      pipe.zadd(EXPIRY_INDEX, expires, jobKey(kind, id));
      if (kind === 'normalize') pipe.sadd(uploadRefsKey(hex16), jobKey(kind, id));
    }
  }
  await pipe.exec();
  for (let i = 0; i < files.length; i += 500) {
    await Promise.all(
      files.slice(i, i + 500).map((f) => writeFile(join(storage.root, f), Buffer.alloc(FILE_BYTES))),
    );
  }
}

/** The seed's loop: SCAN every key, GET each record, compare `expires_at`, delete the expired ones and their files. */
async function seedMethod(redis: Redis, storage: Storage): Promise<{ ms: number; removed: number }> {
  const started = performance.now();
  const now = new Date().toISOString();
  let cursor = '0';
  let removed = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', '*job:*', 'COUNT', 1000);
    cursor = next;
    const pipe = redis.pipeline();
    for (const key of keys) pipe.get(key);
    const raws = (await pipe.exec()) ?? [];
    for (const [i, [, raw]] of raws.entries()) {
      if (typeof raw !== 'string') continue;
      const rec = JSON.parse(raw) as { expires_at: string; result?: { files?: string[] } };
      if (rec.expires_at > now) continue;
      await redis.del(keys[i] as string);
      for (const f of rec.result?.files ?? []) await unlink(join(storage.root, f)).catch(() => undefined);
      removed += 1;
    }
  } while (cursor !== '0');
  return { ms: performance.now() - started, removed };
}

interface ChildReport {
  duration_ms: number;
  /** CPU time of the janitor process from the sweep's first batch to its end (user + system). */
  cpu_ms: number;
  removed: { download: number; normalize: number; orphan: number };
  files_removed: number;
  peak_rss_mb: number;
  rss_before_mb: number;
  rss_at_sweep_mb: number;
  heap_at_sweep_mb: number;
  peak_heap_mb: number;
  max_rss_mb: number;
}

/** The janitor in a process of its own, so its memory is its own: runs the start-up sweep and reports. */
async function runJanitorChild(): Promise<void> {
  const { startJanitor } = await import('../janitor/src/janitor.js');
  const { createLogger } = await import('@media-jobs/libs');
  // The bench's parent hands the configuration over in the environment, as a service gets it.
  const config = loadConfig(process.env);
  const mb = (n: number) => Math.round((n / 1024 / 1024) * 10) / 10;
  const rssBefore = process.memoryUsage().rss;
  let peakRss = rssBefore;
  let peakHeap = process.memoryUsage().heapUsed;
  // Sampling costs CPU itself: every 20 ms is enough to see a sweep's peak.
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  }, 20);
  let atSweep: NodeJS.MemoryUsage | undefined;
  let cpuAtSweep: NodeJS.CpuUsage | undefined;
  const hooks = {
    afterRead: async () => {
      atSweep ??= process.memoryUsage();
      cpuAtSweep ??= process.cpuUsage();
    },
  };
  const fileBatchSize = process.env.BENCH_FILE_BATCH ? Number(process.env.BENCH_FILE_BATCH) : undefined;
  const janitor = await startJanitor(config, createLogger('janitor', { logLevel: 'warn' }), {
    hooks,
    ...(fileBatchSize ? { fileBatchSize } : {}),
  });
  clearInterval(sampler);
  const cpu = process.cpuUsage(cpuAtSweep);
  const redis = new Redis(config.redisUrl);
  const summary = JSON.parse((await redis.get(LAST_SWEEP_KEY)) as string) as ChildReport;
  redis.disconnect();
  await janitor.stop();
  const report: ChildReport = {
    duration_ms: summary.duration_ms,
    cpu_ms: Math.round((cpu.user + cpu.system) / 1000),
    removed: summary.removed,
    files_removed: summary.files_removed,
    rss_before_mb: mb(rssBefore),
    rss_at_sweep_mb: mb(atSweep?.rss ?? 0),
    heap_at_sweep_mb: mb(atSweep?.heapUsed ?? 0),
    peak_rss_mb: mb(peakRss),
    peak_heap_mb: mb(peakHeap),
    max_rss_mb: Math.round(process.resourceUsage().maxRSS / 102.4) / 10,
  };
  console.log(JSON.stringify(report));
}

async function janitorInChild(env: Record<string, string>): Promise<ChildReport> {
  const child = spawn(
    process.execPath,
    ['--conditions=media-jobs-source', '--import', 'tsx', 'bench/janitor.ts', '--child'],
    {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        ...(process.env.BENCH_FILE_BATCH ? { BENCH_FILE_BATCH: process.env.BENCH_FILE_BATCH } : {}),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`janitor child exited ${code}: ${out}`);
  // The report is the child's one line with `duration_ms`; its logger may write after it.
  const line = out.split('\n').find((l) => l.startsWith('{"duration_ms"'));
  if (!line) throw new Error(`janitor child printed no report: ${out}`);
  return JSON.parse(line) as ChildReport;
}

async function countFiles(storage: Storage): Promise<number> {
  let n = 0;
  for (const dir of [storage.downloads, storage.normalized, storage.uploads])
    n += (await readdir(dir)).length;
  return n;
}

async function main(): Promise<void> {
  const [redisServer, natsServer, data] = await Promise.all([startRedis(), startNats(), tempDataDir()]);
  const redis = new Redis(redisServer.url);
  const storage = createStorage(data.dir);
  try {
    for (const dir of [storage.downloads, storage.normalized, storage.uploads, storage.tmp])
      await mkdir(dir, { recursive: true });
    console.log(
      `Loading ${LIVE.toLocaleString('en')} live records (${LIVE_WITH_FILES} with files) and ${(EXPIRED.download + EXPIRED.normalize).toLocaleString('en')} expired ones with files...`,
    );
    await loadLive(redis, storage);
    await loadExpired(redis, storage);
    console.log(`  files on disk: ${await countFiles(storage)}; Redis keys: ${await redis.dbsize()}`);

    const seed = await seedMethod(redis, storage);
    console.log(`Seed method (SCAN + GET every record): ${seed.ms.toFixed(0)} ms, removed ${seed.removed}`);

    await loadExpired(redis, storage);
    const env = {
      REDIS_URL: redisServer.url,
      NATS_URL: natsServer.url,
      DATA_DIR: data.dir,
      CACHE_TTL_HOURS: '24',
      LOG_LEVEL: 'warn',
    };
    const janitor = await janitorInChild(env);
    const { download, normalize } = janitor.removed;
    console.log(
      `Janitor sweep (jobs:expiry in batches):  ${janitor.duration_ms} ms (${janitor.cpu_ms} ms CPU), removed ${download + normalize} (${download} download, ${normalize} normalize), ${janitor.files_removed} files`,
    );
    const liveLeft = await countFiles(storage);
    console.log(
      `  live files intact: ${liveLeft} / ${LIVE_WITH_FILES}; live records: ${await redis.zcard(EXPIRY_INDEX)}`,
    );
    const ratio = seed.ms / Math.max(1, janitor.duration_ms);
    const [load1] = loadavg();
    console.log(
      `\nMachine load average (1 min): ${load1?.toFixed(2)} on ${cpus().length} cores: both times grow with it`,
    );
    console.log(
      `Speed-up: ${ratio.toFixed(1)}x (target >= 20x); sweep ${janitor.duration_ms} ms (target < 1000 ms)`,
    );
    console.log(
      `Janitor memory (its own process, Node + tsx + modules included): peak RSS ${janitor.peak_rss_mb} MB (target < 150 MB; OS max RSS ${janitor.max_rss_mb} MB)`,
    );
    console.log(
      `  RSS after imports ${janitor.rss_before_mb} MB, at the sweep's start ${janitor.rss_at_sweep_mb} MB; JS heap at start ${janitor.heap_at_sweep_mb} MB, peak ${janitor.peak_heap_mb} MB`,
    );
  } finally {
    redis.disconnect();
    await Promise.all([redisServer.close(), natsServer.close()]);
    await rm(data.dir, { recursive: true, force: true });
  }
}

if (process.argv.includes('--child')) await runJanitorChild();
else await main();
