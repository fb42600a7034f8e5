/**
 * `npm run bench:gateways`: new submissions (`POST /download` of a URL never seen, so each is a
 * claim in Redis and a publish to JetStream) per second against one gateway process and
 * against two, side by side in one run, on servers of its own (nats-server, redis-server, a
 * temp DATA_DIR). No worker runs: the jobs stay queued, so only the submission path is timed.
 * With two gateways the load is split evenly between them, as a load balancer would.
 *
 * Knobs (environment): BENCH_DURATION_SECONDS (10), BENCH_CONNECTIONS (32, in all).
 * Progress goes to stderr, the results table to stdout.
 */
import autocannon from 'autocannon';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { spawnService, startPlatform, waitUntil, type ServiceProcess } from '@media-jobs/libs/testing';
import { positiveInt, progress } from './knobs.js';

const DURATION_SECONDS = positiveInt('BENCH_DURATION_SECONDS', 10);
const CONNECTIONS = positiveInt('BENCH_CONNECTIONS', 32);
const WARMUP_SECONDS = 2;

/** A free loopback port (the gateways run at `warn`, so they do not log the one they took). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Starts a gateway process (request log off: `warn`) and waits for its `/ready`. */
async function startGatewayProcess(
  env: Record<string, string>,
): Promise<{ proc: ServiceProcess; url: string }> {
  const port = await freePort();
  const proc = spawnService('gateway', { ...env, PORT: String(port) });
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(`the gateway on ${port} to be ready`, async () => (await fetch(`${url}/ready`)).ok, {
    timeoutMs: 60_000,
    retryErrors: true,
  });
  return { proc, url };
}

let serial = 0;

/** autocannon on one gateway: every request a new URL, so every request a new job. */
function load(url: string, connections: number, seconds: number, tag: string): Promise<autocannon.Result> {
  return autocannon({
    url,
    connections,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        path: '/download',
        headers: { 'content-type': 'application/json' },
        setupRequest: (req) => ({
          ...req,
          body: JSON.stringify({ url: `https://example.com/${tag}/${(serial += 1)}.mp4`, quality: 'best' }),
        }),
      },
    ],
  });
}

interface Row {
  gateways: number;
  perSecond: number;
  p50: number;
  p99: number;
  non2xx: number;
}

/** Warm-up, then the measured run, the connections split evenly across the gateways. */
async function measure(urls: string[], tag: string): Promise<Row> {
  const share = Math.max(1, Math.floor(CONNECTIONS / urls.length));
  await Promise.all(urls.map((u, i) => load(u, share, WARMUP_SECONDS, `${tag}-warm-${i}`)));
  const results = await Promise.all(urls.map((u, i) => load(u, share, DURATION_SECONDS, `${tag}-${i}`)));
  const total = results.reduce((n, r) => n + r.requests.total, 0);
  return {
    gateways: urls.length,
    perSecond: total / DURATION_SECONDS,
    // The slower gateway's percentiles: what a client behind the balancer sees at worst.
    p50: Math.max(...results.map((r) => r.latency.p50)),
    p99: Math.max(...results.map((r) => r.latency.p99)),
    non2xx: results.reduce((n, r) => n + r.non2xx, 0),
  };
}

async function main(): Promise<void> {
  progress('starting nats-server, redis-server and two gateway processes');
  const platform = await startPlatform();
  const env = platform.env({ LOG_LEVEL: 'warn' });
  const gateways = await Promise.all([startGatewayProcess(env), startGatewayProcess(env)]);
  const procs = gateways.map((g) => g.proc);
  try {
    const urls = gateways.map((g) => g.url);
    progress(`1 gateway: ${CONNECTIONS} connections for ${DURATION_SECONDS} s`);
    const one = await measure(urls.slice(0, 1), 'one');
    progress(`2 gateways: ${CONNECTIONS} connections in all for ${DURATION_SECONDS} s`);
    const two = await measure(urls, 'two');
    const rows = [one, two];
    const lines = [
      `new submissions (POST /download, each a new job), ${CONNECTIONS} connections, ${DURATION_SECONDS} s`,
      'gateways  submissions/s   p50 ms   p99 ms   non-2xx',
      ...rows.map(
        (r) =>
          `${String(r.gateways).padStart(8)}  ${r.perSecond.toFixed(0).padStart(13)}  ${String(r.p50).padStart(7)}  ${String(r.p99).padStart(7)}  ${String(r.non2xx).padStart(8)}`,
      ),
      `2 gateways / 1 gateway: ${(two.perSecond / one.perSecond).toFixed(2)}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    await platform.close();
  }
}

await main();
