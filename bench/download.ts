/**
 * `npm run bench:download`: the download path measured side by side in one run, on servers
 * of its own (nats-server, redis-server, a temp DATA_DIR, a local HLS fixture).
 *
 * (a) Latency: raw `yt-dlp` on the local HLS master URL vs submit-to-completed through the
 *     stack (POST /download until the `completed` event), alternating, medians and ratio.
 *     Target: stack / raw <= 1.15.
 * (b) Throughput: cache-hit `POST /download` vs a bare Express 5 handler that answers the
 *     same JSON, then `GET /jobs/:id` of that job vs a bare handler answering the same JSON
 *     bytes, each pair loaded by autocannon with the same connections after a warm-up of
 *     each, in 2 s slices alternating bare and gateway (so the machine's other load falls on
 *     both alike): req/s over all slices, p50/p99 the median of the slices'. Every guard of the gateway is on: request log, security headers, API key (API_KEYS set,
 *     the key sent), rate limits (on, with budgets so large autocannon's one address never
 *     meets them). Targets, each: throughput ratio >= 0.7, gateway p99 <= 10 ms.
 *
 * Knobs (environment): BENCH_REPS (5), BENCH_VIDEO_SECONDS (10), BENCH_DURATION_SECONDS (10),
 * BENCH_CONNECTIONS (32), BENCH_SKIP_LATENCY (set to 1: part (b) only). Progress goes to
 * stderr, the results table to stdout.
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
/** Part (b) alone: a throughput run without part (a)'s minute of downloads. */
const SKIP_LATENCY = process.env.BENCH_SKIP_LATENCY === '1';
const WARMUP_SECONDS = 3;
/** Each measurement is cut into slices of about this long, bare and gateway alternating. */
const SLICE_SECONDS = 2;
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

/** The bench's API key (API_KEYS), sent with every request. */
const API_KEY = 'bench-key-0123456789abcdef';
const AUTH = { authorization: `Bearer ${API_KEY}` };
/** Budgets far above what one autocannon address sends in a minute: the limiter runs, never refuses. */
const RATE_LIMIT = '1000000';

async function submit(
  gatewayUrl: string,
  url: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${gatewayUrl}/download`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...AUTH },
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

/** One request autocannon repeats: POST with a JSON body, or GET. */
type Target = { url: string; body?: string };

/** autocannon on a worker thread, so the load generator does not share the server's event loop. */
async function load(target: Target, seconds: number, label: string): Promise<Load> {
  let ticks = 0;
  const instance = autocannon({
    url: target.url,
    ...(target.body === undefined
      ? { method: 'GET' as const, headers: AUTH }
      : {
          method: 'POST' as const,
          headers: { 'content-type': 'application/json', ...AUTH },
          body: target.body,
        }),
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

/** The floor: Express 5 answering constant JSON, with no middleware. */
/** Slices as one measurement: requests over time; p50 and p99 the median of the slices'. */
function combine(slices: Load[]): Load {
  const sum = (f: (l: Load) => number) => slices.reduce((a, l) => a + f(l), 0);
  return {
    rps: sum((l) => l.rps) / slices.length,
    p50: median(slices.map((l) => l.p50)),
    p99: median(slices.map((l) => l.p99)),
    requests: sum((l) => l.requests),
    non2xx: sum((l) => l.non2xx),
    errors: sum((l) => l.errors),
  };
}

async function startBareExpress(
  hitBody: unknown,
  jobBody: unknown,
): Promise<{ url: string; close(): Promise<void> }> {
  const app = express();
  app.disable('x-powered-by');
  app.post('/download', (_req, res) => {
    res.json(hitBody);
  });
  app.get('/jobs/:id', (_req, res) => {
    res.json(jobBody);
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
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
    // Every guard on: the key is required for submissions (and sent on reads too), and the
    // limits run on every request with budgets autocannon's one address never exhausts.
    API_KEYS: API_KEY,
    RATE_LIMIT_PER_MINUTE: RATE_LIMIT,
    RATE_LIMIT_READS_PER_MINUTE: RATE_LIMIT,
  });
  const logger = (service: string) => createLogger(service, config);
  const gateway = await startGateway(config, logger('gateway'));
  const worker = await startDownloadWorker(config, logger('download-worker'));
  const watcher = new CompletionWatcher();
  const drainWatcher = await watcher.start(config);
  let watching: Promise<void> | undefined;
  const stopWatcher = () => (watching ??= drainWatcher());
  const master = `${fixtures.origin}/hls/master.m3u8`;
  const { stdout: version } = await run(config.ytDlpPath, ['--version']);

  try {
    // (a) one warm-up of each (Python's and the stack's first-run costs), then alternate.
    const raw: number[] = [];
    const stack: number[] = [];
    const toStart: number[] = [];
    if (SKIP_LATENCY) progress('(a) skipped (BENCH_SKIP_LATENCY=1)');
    else {
      progress(`(a) raw yt-dlp ${version.trim()} vs the stack, ${REPS} repetitions after a warm-up`);
      await timeRaw(config.ytDlpPath, `${master}?warmup=raw`);
      await timeStack(gateway.url, watcher, `${master}?warmup=stack`);
    }
    for (let i = 1; i <= (SKIP_LATENCY ? 0 : REPS); i += 1) {
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
    // The watcher has done its part; left subscribed, it would take every cache_hit event
    // of the load below on the gateway's own event loop.
    await stopWatcher();
    const hit = await submit(gateway.url, cachedUrl);
    if (hit.status !== 200 || hit.body.cache_hit !== true) {
      throw new Error(`expected a cache hit, got ${hit.status}: ${JSON.stringify(hit.body)}`);
    }
    const requestBody = JSON.stringify({ url: cachedUrl, quality: 'best' });
    const jobPath = `/jobs/${first.body.id}`;
    const jobRes = await fetch(`${gateway.url}${jobPath}`, { headers: AUTH });
    const jobText = await jobRes.text();
    if (jobRes.status !== 200) throw new Error(`GET ${jobPath} answered ${jobRes.status}: ${jobText}`);
    const bare = await startBareExpress(hit.body, JSON.parse(jobText));
    const pairs: { name: string; bare: Load; gateway: Load }[] = [];
    try {
      progress(
        `(b) load: ${CONNECTIONS} connections, ${WARMUP_SECONDS} s warm-up + ${DURATION_SECONDS} s each`,
      );
      const runs: [string, string, string | undefined][] = [
        ['POST /download (cache hit)', '/download', requestBody],
        [`GET /jobs/:id`, jobPath, undefined],
      ];
      for (const [name, path, body] of runs) {
        const bareTarget = { url: `${bare.url}${path}`, body };
        const gatewayTarget = { url: `${gateway.url}${path}`, body };
        await load(bareTarget, WARMUP_SECONDS, `bare ${name} warm-up`);
        await load(gatewayTarget, WARMUP_SECONDS, `gateway ${name} warm-up`);
        // Alternating slices, so a change in the machine's other load falls on both alike.
        const bareSlices: Load[] = [];
        const gatewaySlices: Load[] = [];
        const slices = Math.max(1, Math.floor(DURATION_SECONDS / SLICE_SECONDS));
        const sliceSeconds = DURATION_SECONDS / slices;
        for (let i = 1; i <= slices; i += 1) {
          bareSlices.push(await load(bareTarget, sliceSeconds, `bare ${name} ${i}/${slices}`));
          gatewaySlices.push(await load(gatewayTarget, sliceSeconds, `gateway ${name} ${i}/${slices}`));
        }
        pairs.push({ name, bare: combine(bareSlices), gateway: combine(gatewaySlices) });
      }
    } finally {
      await bare.close();
    }

    const rawMedian = median(raw);
    const stackMedian = median(stack);
    const latencyRatio = stackMedian / rawMedian;
    const lines = [
      '',
      `Download benchmark: HLS ${HEIGHTS.join('/')}p, ${VIDEO_SECONDS} s video, quality best; yt-dlp ${version.trim()}; node ${process.version}`,
      `Every guard on: request log, security headers, API_KEYS (key sent), rate limits RATE_LIMIT_PER_MINUTE=RATE_LIMIT_READS_PER_MINUTE=${RATE_LIMIT} (the load comes from one address).`,
      'ALLOW_PRIVATE_URLS=true: the fixture server is on loopback. With it false a cache hit is the same one round trip (the DNS check runs only for a new job).',
      '',
      ...(SKIP_LATENCY
        ? ['(a) skipped (BENCH_SKIP_LATENCY=1)']
        : [
            '(a) one download, median of ' + REPS,
            '  measurement                          median      runs (s)',
            `  raw yt-dlp                           ${fmt(rawMedian / 1000).padStart(6)} s    ${raw.map((x) => fmt(x / 1000)).join(' ')}`,
            `  stack: POST /download → completed    ${fmt(stackMedian / 1000).padStart(6)} s    ${stack.map((x) => fmt(x / 1000)).join(' ')}`,
            `    of which POST → started event      ${fmt(median(toStart) / 1000).padStart(6)} s    ${toStart.map((x) => fmt(x / 1000)).join(' ')}`,
            `  ratio stack / raw                    ${fmt(latencyRatio).padStart(6)}      target <= 1.15  ${verdict(latencyRatio <= 1.15)}`,
          ]),
      '',
      `(b) ${CONNECTIONS} connections, ${DURATION_SECONDS} s each in ${SLICE_SECONDS} s slices, bare and gateway alternating; p50/p99: median of the slices`,
      '  handler                     req/s    p50 ms   p99 ms   requests   non-2xx   errors',
    ];
    let invalid = false;
    for (const pair of pairs) {
      const ratio = pair.gateway.rps / pair.bare.rps;
      lines.push(
        `  ${pair.name}`,
        loadRow('bare Express 5 (constant)', pair.bare),
        loadRow('gateway', pair.gateway),
        `  throughput ratio gateway / bare: ${fmt(ratio)}   target >= 0.70  ${verdict(ratio >= 0.7)}`,
        `  gateway p99: ${pair.gateway.p99} ms                target <= 10 ms ${verdict(pair.gateway.p99 <= 10)}`,
      );
      invalid ||= pair.gateway.non2xx > 0 || pair.gateway.errors > 0;
    }
    lines.push('');
    process.stdout.write(lines.join('\n'));
    if (invalid) {
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
