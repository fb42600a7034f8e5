/**
 * `npm run bench:download`: the download path measured side by side in one run, on servers
 * of its own (nats-server, redis-server, a temp DATA_DIR, a local HLS fixture).
 *
 * (a) Latency: raw `yt-dlp` on the local HLS master URL vs submit-to-completed through the
 *     stack (POST /download until the `completed` event), alternating, medians and ratio.
 *     Target: stack / raw <= 1.15.
 * (b) Throughput: cache-hit `POST /download` vs a bare Express 5 handler that answers the
 *     same JSON, both loaded by autocannon with the same connections.
 *     Targets: throughput ratio >= 0.7, gateway p99 <= 10 ms.
 *
 * Knobs (environment): BENCH_REPS (5), BENCH_VIDEO_SECONDS (10), BENCH_DURATION_SECONDS (10),
 * BENCH_CONNECTIONS (32). Progress goes to stderr, the results table to stdout.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import express from 'express';
import { connectNats, createLogger, loadConfig, type Config } from '@media-jobs/libs';
import {
  makeHls,
  run,
  startFixtureServer,
  startNats,
  startRedis,
  tempDataDir,
} from '@media-jobs/libs/testing';
import { startDownloadWorker } from '../download-worker/src/worker.js';
import { startGateway } from '../gateway/src/gateway.js';
import { positiveInt, progress } from './knobs.js';

const REPS = positiveInt('BENCH_REPS', 5);
const VIDEO_SECONDS = positiveInt('BENCH_VIDEO_SECONDS', 10);
const DURATION_SECONDS = positiveInt('BENCH_DURATION_SECONDS', 10);
const CONNECTIONS = positiveInt('BENCH_CONNECTIONS', 32);
const WARMUP_SECONDS = 3;
const HEIGHTS = [1080, 720, 360];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const fmt = (n: number, digits = 2): string => n.toFixed(digits);
const verdict = (ok: boolean): string => (ok ? 'ok' : 'MISSED');

// --- the stack --------------------------------------------------------------------------

interface Finish {
  type: 'completed' | 'failed';
  /** performance.now() when the `started` event arrived (NaN if it never did). */
  startedAt: number;
  at: number;
}

/** Times each download job's events on arrival; resolves when `completed` or `failed` arrives. */
class CompletionWatcher {
  private readonly started = new Map<string, number>();
  private readonly done = new Map<string, Finish>();
  private readonly waiting = new Map<string, (r: Finish) => void>();

  async start(config: Config): Promise<() => Promise<void>> {
    const nc = await connectNats(config, 'bench');
    const sub = nc.subscribe('events.job.download.*.*');
    void (async () => {
      for await (const msg of sub) {
        const at = performance.now();
        const [, , , id, type] = msg.subject.split('.');
        if (!id) continue;
        if (type === 'started') this.started.set(id, at);
        if (type !== 'completed' && type !== 'failed') continue;
        const result: Finish = { type, startedAt: this.started.get(id) ?? Number.NaN, at };
        const resolve = this.waiting.get(id);
        if (resolve) {
          this.waiting.delete(id);
          resolve(result);
        } else this.done.set(id, result);
      }
    })();
    await nc.flush();
    return () => nc.drain();
  }

  wait(id: string, timeoutMs = 120_000): Promise<Finish> {
    const seen = this.done.get(id);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`job ${id} did not finish within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
  }
}

async function submit(
  gatewayUrl: string,
  url: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${gatewayUrl}/download`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url, quality: 'best' }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Submit-to-completed, and the part of it before the worker's `started` event. */
async function timeStack(
  gatewayUrl: string,
  watcher: CompletionWatcher,
  url: string,
): Promise<{ total: number; toStart: number }> {
  const start = performance.now();
  const { status, body } = await submit(gatewayUrl, url);
  if (status !== 202 || typeof body.id !== 'string') {
    throw new Error(`POST /download answered ${status}: ${JSON.stringify(body)}`);
  }
  const end = await watcher.wait(body.id);
  if (end.type !== 'completed') throw new Error(`job ${body.id} ${end.type}`);
  return { total: end.at - start, toStart: end.startedAt - start };
}

/** What a user would type: yt-dlp's default format (bv*+ba/b, as the stack's `best`) into a folder. */
async function timeRaw(ytDlp: string, url: string): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'mj-bench-raw-'));
  try {
    const start = performance.now();
    await run(ytDlp, [
      '--ignore-config',
      '--no-cache-dir',
      '--no-playlist',
      '-q',
      '--no-warnings',
      '-f',
      'bv*+ba/b',
      '-P',
      dir,
      '-o',
      'media.%(ext)s',
      '--',
      url,
    ]);
    return performance.now() - start;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// --- load -------------------------------------------------------------------------------

interface Load {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  non2xx: number;
  errors: number;
}

/** autocannon on a worker thread, so the load generator does not share the server's event loop. */
async function load(url: string, body: string, seconds: number, label: string): Promise<Load> {
  let ticks = 0;
  const instance = autocannon({
    url,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections: CONNECTIONS,
    duration: seconds,
    workers: 1,
  });
  const ticker = setInterval(() => {
    ticks += 1;
    if (process.stderr.isTTY) process.stderr.write(`\rbench:   ${label}: ${ticks}/${seconds} s `);
    else if (ticks % 5 === 0) progress(`  ${label}: ${ticks}/${seconds} s`);
  }, 1000);
  try {
    const r = await instance;
    return {
      rps: r.requests.average,
      p50: r.latency.p50,
      p99: r.latency.p99,
      requests: r.requests.total,
      non2xx: r.non2xx,
      errors: r.errors + r.timeouts,
    };
  } finally {
    clearInterval(ticker);
    if (process.stderr.isTTY) process.stderr.write('\n');
  }
}

async function startBareExpress(responseBody: unknown): Promise<{ url: string; close(): Promise<void> }> {
  const app = express();
  app.disable('x-powered-by');
  app.post('/download', (_req, res) => {
    res.json(responseBody);
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/download`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// --- main -------------------------------------------------------------------------------

async function main(): Promise<void> {
  progress(
    `making the HLS fixture (${HEIGHTS.join('p, ')}p, ${VIDEO_SECONDS} s; cached after the first run)`,
  );
  const hlsDir = await makeHls(HEIGHTS, VIDEO_SECONDS);
  progress('starting nats-server, redis-server, the fixture server, the gateway and the download worker');
  const [nats, redis, data, fixtures] = await Promise.all([
    startNats(),
    startRedis(),
    tempDataDir(),
    startFixtureServer(),
  ]);
  fixtures.mount('hls', hlsDir);
  const config = loadConfig({
    NATS_URL: nats.url,
    REDIS_URL: redis.url,
    DATA_DIR: data.dir,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    ALLOW_PRIVATE_URLS: 'true',
    YTDLP_PATH: process.env.YTDLP_PATH ?? '',
    // autocannon's load comes from one address: per-client limits would turn it into 429s.
    RATE_LIMIT_PER_MINUTE: '0',
    RATE_LIMIT_READS_PER_MINUTE: '0',
  });
  const logger = (service: string) => createLogger(service, config);
  const gateway = await startGateway(config, logger('gateway'));
  const worker = await startDownloadWorker(config, logger('download-worker'));
  const watcher = new CompletionWatcher();
  const stopWatcher = await watcher.start(config);
  const master = `${fixtures.origin}/hls/master.m3u8`;
  const { stdout: version } = await run(config.ytDlpPath, ['--version']);

  try {
    // (a) one warm-up of each (Python's and the stack's first-run costs), then alternate.
    progress(`(a) raw yt-dlp ${version.trim()} vs the stack, ${REPS} repetitions after a warm-up`);
    await timeRaw(config.ytDlpPath, `${master}?warmup=raw`);
    await timeStack(gateway.url, watcher, `${master}?warmup=stack`);
    const raw: number[] = [];
    const stack: number[] = [];
    const toStart: number[] = [];
    for (let i = 1; i <= REPS; i += 1) {
      // Alternate which goes first, so neither always runs on a warmer machine.
      const pair = i % 2 === 1 ? (['raw', 'stack'] as const) : (['stack', 'raw'] as const);
      for (const which of pair) {
        const url = `${master}?rep=${i}-${which}`;
        if (which === 'raw') raw.push(await timeRaw(config.ytDlpPath, url));
        else {
          const t = await timeStack(gateway.url, watcher, url);
          stack.push(t.total);
          toStart.push(t.toStart);
        }
      }
      progress(`  rep ${i}/${REPS}: raw ${fmt(raw.at(-1)! / 1000)} s, stack ${fmt(stack.at(-1)! / 1000)} s`);
    }

    // (b) the cache-hit answer, and a bare handler answering the very same JSON.
    const cachedUrl = `${master}?bench=cache-hit`;
    const first = await submit(gateway.url, cachedUrl);
    if (typeof first.body.id !== 'string') throw new Error(`POST /download answered ${first.status}`);
    await watcher.wait(first.body.id);
    const hit = await submit(gateway.url, cachedUrl);
    if (hit.status !== 200 || hit.body.cache_hit !== true) {
      throw new Error(`expected a cache hit, got ${hit.status}: ${JSON.stringify(hit.body)}`);
    }
    const requestBody = JSON.stringify({ url: cachedUrl, quality: 'best' });
    const bare = await startBareExpress(hit.body);
    let bareLoad: Load;
    let gatewayLoad: Load;
    try {
      progress(
        `(b) load: ${CONNECTIONS} connections, ${WARMUP_SECONDS} s warm-up + ${DURATION_SECONDS} s each`,
      );
      await load(bare.url, requestBody, WARMUP_SECONDS, 'bare warm-up');
      bareLoad = await load(bare.url, requestBody, DURATION_SECONDS, 'bare Express');
      await load(`${gateway.url}/download`, requestBody, WARMUP_SECONDS, 'gateway warm-up');
      gatewayLoad = await load(`${gateway.url}/download`, requestBody, DURATION_SECONDS, 'gateway cache hit');
    } finally {
      await bare.close();
    }

    const rawMedian = median(raw);
    const stackMedian = median(stack);
    const latencyRatio = stackMedian / rawMedian;
    const rpsRatio = gatewayLoad.rps / bareLoad.rps;
    const lines = [
      '',
      `Download benchmark: HLS ${HEIGHTS.join('/')}p, ${VIDEO_SECONDS} s video, quality best; yt-dlp ${version.trim()}; node ${process.version}`,
      'Rate limiting off (RATE_LIMIT_PER_MINUTE=0, RATE_LIMIT_READS_PER_MINUTE=0): the load comes from one client address.',
      'ALLOW_PRIVATE_URLS=true: the fixture server is on loopback. With it false a cache hit is the same one round trip (the DNS check runs only for a new job).',
      '',
      '(a) one download, median of ' + REPS,
      '  measurement                          median      runs (s)',
      `  raw yt-dlp                           ${fmt(rawMedian / 1000).padStart(6)} s    ${raw.map((x) => fmt(x / 1000)).join(' ')}`,
      `  stack: POST /download → completed    ${fmt(stackMedian / 1000).padStart(6)} s    ${stack.map((x) => fmt(x / 1000)).join(' ')}`,
      `    of which POST → started event      ${fmt(median(toStart) / 1000).padStart(6)} s    ${toStart.map((x) => fmt(x / 1000)).join(' ')}`,
      `  ratio stack / raw                    ${fmt(latencyRatio).padStart(6)}      target <= 1.15  ${verdict(latencyRatio <= 1.15)}`,
      '',
      `(b) POST /download, ${CONNECTIONS} connections, ${DURATION_SECONDS} s, autocannon`,
      '  handler                     req/s    p50 ms   p99 ms   requests   non-2xx   errors',
      loadRow('bare Express 5 (constant)', bareLoad),
      loadRow('gateway cache hit', gatewayLoad),
      `  throughput ratio gateway / bare: ${fmt(rpsRatio)}   target >= 0.70  ${verdict(rpsRatio >= 0.7)}`,
      `  gateway p99: ${gatewayLoad.p99} ms                target <= 10 ms ${verdict(gatewayLoad.p99 <= 10)}`,
      '',
    ];
    process.stdout.write(lines.join('\n'));
    if (gatewayLoad.non2xx > 0 || gatewayLoad.errors > 0) {
      process.stdout.write(
        '  note: the gateway answered some requests with errors; its figures are not valid\n',
      );
    }
  } finally {
    progress('stopping');
    await stopWatcher();
    await worker.stop();
    await gateway.stop();
    await fixtures.close();
    await Promise.all([nats.close(), redis.close()]);
    await data.remove();
  }
}

function loadRow(name: string, l: Load): string {
  return `  ${name.padEnd(26)}${fmt(l.rps, 0).padStart(7)}${fmt(l.p50, 1).padStart(10)}${fmt(l.p99, 1).padStart(9)}${String(l.requests).padStart(11)}${String(l.non2xx).padStart(10)}${String(l.errors).padStart(9)}`;
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(
      `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
