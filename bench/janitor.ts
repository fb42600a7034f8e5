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
 * Every live record has its (empty) file on disk in the workers' layout (`downloads/<id>.mp4`,
 * `normalized/<id>.wav`): 1,000,000 files, made once with `xargs touch` and cached in
 * `<os temp>/media-jobs-bench/janitor-live-<n>/` (made again when older than 12 h, so that they
 * stay younger than the TTL; delete the folder to free its inodes), plus 2,000 orphans older
 * than the TTL. After the start-up sweep the child sweeps again until the orphan pass over all
 * the files is complete, timing every sweep: that is what an interval's sweep costs.
 * Knobs for quick experiments (the quoted figures use none): `BENCH_LIVE` (live records and
 * files), `BENCH_FILE_BATCH` (the janitor's `fileBatchSize`).
 * The expired records still exist in Redis (their key TTL is a little longer than
 * `expires_at`), so the seed's method can find them at all: it cannot see keys Redis expired.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
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
import type { SweepSummary } from '../janitor/src/report.js';
import { REPO_ROOT, startNats, startRedis } from '@media-jobs/libs/testing';

/** `BENCH_LIVE` shrinks the live set for a quick run; the figures quoted use the default. */
const LIVE = Number(process.env.BENCH_LIVE ?? 1_000_000);
const ORPHANS = 2_000;
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

const liveFile = (i: number) => {
  const { kind, id } = liveId(i);
  return kind === 'download' ? `downloads/${id}.mp4` : `normalized/${id}.wav`;
};

/** Where the live files are kept between runs. */
const LIVE_CACHE = join(tmpdir(), 'media-jobs-bench', `janitor-live-${LIVE}`);
const READY = join(LIVE_CACHE, '.ready');
const CACHE_MAX_AGE_MS = 12 * HOUR;

/**
 * One empty file per live record, in the cache folder (also the janitor's DATA_DIR): made, or
 * touched again when the cache is older than 12 h, by one `xargs touch` per folder, both at once.
 */
async function ensureLiveFiles(): Promise<void> {
  const ready = await readFile(READY, 'utf8').catch(() => null);
  const madeAt = ready ? (JSON.parse(ready) as { made_at: number }).made_at : 0;
  for (const dir of ['downloads', 'normalized', 'uploads', 'tmp'])
    await mkdir(join(LIVE_CACHE, dir), { recursive: true });
  if (Date.now() - madeAt < CACHE_MAX_AGE_MS) {
    process.stderr.write(`  live files: cached in ${LIVE_CACHE}\n`);
    return;
  }
  await rm(READY, { force: true });
  const started = Date.now();
  let done = 0;
  const touch = async (dir: string, names: string[]) => {
    const child = spawn('xargs', ['-0', 'touch', '--'], {
      cwd: join(LIVE_CACHE, dir),
      stdio: ['pipe', 'inherit', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    for (let i = 0; i < names.length; i += 10_000) {
      const batch = names.slice(i, i + 10_000);
      if (!child.stdin.write(`${batch.join('\0')}\0`)) await new Promise((r) => child.stdin.once('drain', r));
      done += batch.length;
      if (done % 100_000 < batch.length)
        process.stderr.write(
          `  live files: ${done} / ${LIVE} written to xargs (${((Date.now() - started) / 1000).toFixed(1)} s)\n`,
        );
    }
    child.stdin.end();
    if ((await exited) !== 0) throw new Error(`xargs touch failed in ${dir}`);
  };
  const names = { downloads: [] as string[], normalized: [] as string[] };
  for (let i = 0; i < LIVE; i++) {
    const [dir, name] = liveFile(i).split('/') as ['downloads' | 'normalized', string];
    names[dir].push(name);
  }
  await Promise.all([touch('downloads', names.downloads), touch('normalized', names.normalized)]);
  await writeFile(READY, JSON.stringify({ made_at: Date.now(), files: LIVE }));
  process.stderr.write(
    `  live files: ${LIVE} made in ${((Date.now() - started) / 1000).toFixed(1)} s (${LIVE_CACHE})\n`,
  );
}

/** Files no record owns, two days old: the orphan pass must find each within one pass. */
async function writeOrphans(storage: Storage): Promise<string[]> {
  const old = new Date(Date.now() - 48 * HOUR);
  const paths = Array.from({ length: ORPHANS }, (_, i) => join(storage.downloads, `O${hex(i, 10)}_best.mp4`));
  for (let i = 0; i < paths.length; i += 500) {
    await Promise.all(
      paths.slice(i, i + 500).map(async (p) => {
        await writeFile(p, Buffer.alloc(FILE_BYTES));
        await utimes(p, old, old);
      }),
    );
  }
  return paths;
}

async function loadLive(redis: Redis): Promise<void> {
  const expires = Date.now() + 24 * HOUR;
  const started = Date.now();
  for (let start = 0; start < LIVE; start += 10_000) {
    const pipe = redis.pipeline();
    for (let i = start; i < start + 10_000; i++) {
      const { kind, id } = liveId(i);
      pipe.set(jobKey(kind, id), record(kind, id, expires, [liveFile(i)]), 'PXAT', expires);
      pipe.zadd(EXPIRY_INDEX, expires, jobKey(kind, id));
    }
    await pipe.exec();
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

/** The expired jobs' files the bench wrote, if a run stopped before they were swept. */
async function removeExpiredFiles(storage: Storage): Promise<void> {
  for (const dir of [storage.downloads, storage.normalized, storage.uploads]) {
    for (const name of await readdir(dir)) {
      if (/^(X[0-9a-f]{10}_best\.mp4|00000000e[0-9a-f]{7}(_mono\.wav|0{48}\.wav))$/.test(name))
        await unlink(join(dir, name)).catch(() => undefined);
    }
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
  /** The sweeps after the start-up one, until the orphan pass completed. */
  interval_sweeps: { duration_ms: number; scanned: number; orphans_removed: number }[];
  /** Sweeps (start-up included) the orphan pass over every file took, and files it looked at. */
  pass_sweeps: number;
  pass_files: number | null;
  orphans_removed: number;
  startup_scanned: number;
}

/** Sweeps after the start-up one at most, waiting for the orphan pass to complete. */
const MAX_SWEEPS = 500;

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
  const cpu = process.cpuUsage(cpuAtSweep);
  const redis = new Redis(config.redisUrl);
  const summary = JSON.parse((await redis.get(LAST_SWEEP_KEY)) as string) as SweepSummary;
  redis.disconnect();
  // Then what each interval costs: sweeps until the orphan pass has seen every file.
  const sweeps: ChildReport['interval_sweeps'] = [];
  let orphansRemoved = summary.removed.orphan;
  let last = summary;
  const startupOnly = process.env.BENCH_STARTUP_ONLY === '1';
  while (!startupOnly && !last.orphans?.pass_completed && sweeps.length < MAX_SWEEPS) {
    last = await janitor.sweepNow('interval');
    orphansRemoved += last.removed.orphan;
    sweeps.push({
      duration_ms: last.duration_ms,
      scanned: last.orphans?.scanned ?? 0,
      orphans_removed: last.removed.orphan,
    });
    if (sweeps.length % 10 === 0)
      process.stderr.write(
        `  sweep ${sweeps.length + 1}: orphan pass at ${last.orphans?.position ?? '?'} files (${last.duration_ms} ms)\n`,
      );
  }
  clearInterval(sampler);
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
    interval_sweeps: sweeps,
    pass_sweeps: last.orphans?.pass_completed ? sweeps.length + 1 : -1,
    pass_files: last.orphans?.total_estimate ?? null,
    orphans_removed: orphansRemoved,
    startup_scanned: summary.orphans?.scanned ?? 0,
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

const quantile = (xs: number[], q: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
};

async function main(): Promise<void> {
  await ensureLiveFiles();
  const [redisServer, natsServer] = await Promise.all([startRedis(), startNats()]);
  const redis = new Redis(redisServer.url);
  // The cached live files are the data folder; the bench's own files go again at the end.
  const storage = createStorage(LIVE_CACHE);
  const orphans: string[] = [];
  try {
    console.log(
      `Loading ${LIVE.toLocaleString('en')} live records (each with its file on disk), ${ORPHANS.toLocaleString('en')} orphan files and ${(EXPIRED.download + EXPIRED.normalize).toLocaleString('en')} expired jobs with files...`,
    );
    await loadLive(redis);
    await loadExpired(redis, storage);
    orphans.push(...(await writeOrphans(storage)));
    console.log(`  files on disk: ${await countFiles(storage)}; Redis keys: ${await redis.dbsize()}`);

    const seed = await seedMethod(redis, storage);
    console.log(`Seed method (SCAN + GET every record): ${seed.ms.toFixed(0)} ms, removed ${seed.removed}`);

    await loadExpired(redis, storage);
    const env = {
      REDIS_URL: redisServer.url,
      NATS_URL: natsServer.url,
      DATA_DIR: LIVE_CACHE,
      CACHE_TTL_HOURS: '24',
      LOG_LEVEL: 'warn',
    };
    const janitor = await janitorInChild(env);
    // Then an interval's sweep with 10,000 expired jobs, after a complete orphan pass: a fresh
    // janitor process resumes from the cursor in Redis and finds result files by name.
    await loadExpired(redis, storage);
    const later = await janitorInChild({ ...env, BENCH_STARTUP_ONLY: '1' });
    const { download, normalize } = janitor.removed;
    console.log(
      `Janitor start-up sweep (jobs:expiry in batches + first orphan slice): ${janitor.duration_ms} ms (${janitor.cpu_ms} ms CPU), removed ${download + normalize} (${download} download, ${normalize} normalize), ${janitor.files_removed} files; orphan slice scanned ${janitor.startup_scanned} files`,
    );
    console.log(
      `Janitor sweep after a complete orphan pass (10,000 expired jobs, result files found by name + orphan slice): ${later.duration_ms} ms (${later.cpu_ms} ms CPU), removed ${later.removed.download + later.removed.normalize}, ${later.files_removed} files; orphan slice scanned ${later.startup_scanned} files (target < 1000 ms)`,
    );
    const times = janitor.interval_sweeps.map((s) => s.duration_ms);
    const scanned = janitor.interval_sweeps.map((s) => s.scanned);
    const orphansLeft = orphans.filter((p) => existsSync(p)).length;
    console.log(
      `Interval sweeps (no expired jobs, ${LIVE.toLocaleString('en')} live files): ${times.length} until the orphan pass completed; duration min ${Math.min(...times)} / median ${quantile(times, 0.5)} / p90 ${quantile(times, 0.9)} / max ${Math.max(...times)} ms (target < 1000 ms per sweep); files scanned per sweep median ${quantile(scanned, 0.5)}`,
    );
    console.log(
      `Orphan pass: ${janitor.pass_sweeps} sweeps over ${janitor.pass_files ?? '?'} files (start-up included); orphans removed ${janitor.orphans_removed} / ${ORPHANS} (target: all within one pass), left ${orphansLeft}`,
    );
    const liveLeft = await countFiles(storage);
    console.log(
      `  live files intact: ${liveLeft} / ${LIVE}; live records: ${await redis.zcard(EXPIRY_INDEX)}`,
    );
    const ratio = seed.ms / Math.max(1, janitor.duration_ms);
    const [load1] = loadavg();
    console.log(
      `\nMachine load average (1 min): ${load1?.toFixed(2)} on ${cpus().length} cores: both times grow with it`,
    );
    console.log(
      `Speed-up: ${ratio.toFixed(1)}x (target >= 20x); start-up sweep ${janitor.duration_ms} ms (target < 1000 ms); interval sweep max ${Math.max(...times)} ms (target < 1000 ms)`,
    );
    console.log(
      `Janitor memory (its own process, Node + tsx + modules included): peak RSS ${janitor.peak_rss_mb} MB over the start-up sweep and a full orphan pass, ${later.peak_rss_mb} MB over a sweep after a pass (target < 150 MB; OS max RSS ${janitor.max_rss_mb} / ${later.max_rss_mb} MB)`,
    );
    console.log(
      `  RSS after imports ${janitor.rss_before_mb} MB, at the sweep's start ${janitor.rss_at_sweep_mb} MB; JS heap at start ${janitor.heap_at_sweep_mb} MB, peak ${janitor.peak_heap_mb} MB`,
    );
  } finally {
    redis.disconnect();
    await Promise.all([redisServer.close(), natsServer.close()]);
    // Only the cached live files stay: the expired jobs' and orphans' files go, and tmp/.
    await Promise.all([
      ...orphans.map((p) => rm(p, { force: true })),
      rm(storage.tmp, { recursive: true, force: true }),
    ]);
    await removeExpiredFiles(storage);
  }
}

if (process.argv.includes('--child')) await runJanitorChild();
else await main();
