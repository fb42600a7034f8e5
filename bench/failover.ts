/**
 * `npm run bench:failover`: what Redis Sentinel costs and what a failover takes, on a master
 * with one replica and three sentinels of its own (loopback).
 *
 * - the claim of a new job with and without `WAIT 1` (what the services do under Sentinel),
 *   side by side: p50 and p99 over `BENCH_CLAIMS` sequential claims each;
 * - a failover: the master is stopped right after a burst of accepted claims; the time until
 *   the first claim succeeds on the promoted replica, and how many of the accepted jobs the
 *   new master holds.
 */
import { JobStore, closeRedis, createRedis, loadConfig } from '@media-jobs/libs';
import { startRedisSentinels } from '@media-jobs/libs/testing';

const CLAIMS = Number(process.env.BENCH_CLAIMS ?? 2000);
const BURST = 500;

const quantile = (sorted: number[], q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
const ms = (n: number): string => `${n.toFixed(2)} ms`;

/** A progress line: redrawn in place on a terminal, one line each in a log. */
function status(line: string): void {
  if (process.stdout.isTTY) process.stdout.write(`\r\x1b[K${line}`);
  else if (line) process.stdout.write(`${line}\n`);
}

async function main(): Promise<void> {
  process.stdout.write('starting a Redis master, a replica and three sentinels...\n');
  const set = await startRedisSentinels();
  const config = loadConfig({ REDIS_SENTINELS: set.sentinelList, REDIS_SENTINEL_NAME: set.name });
  const redis = createRedis(config);
  try {
    const stores = {
      'no WAIT': new JobStore({ redis, ttlMs: 3_600_000 }),
      'WAIT 1 (Sentinel default)': new JobStore({ redis, ttlMs: 3_600_000, createReplicas: 1 }),
    };
    const rows: [string, number, number][] = [];
    for (const [name, store] of Object.entries(stores)) {
      const times: number[] = [];
      for (let i = 0; i < CLAIMS; i++) {
        const t = performance.now();
        await store.create('download', `${name.length}x${i}_best`, { url: 'http://x', quality: 'best' });
        times.push(performance.now() - t);
        if (i % 500 === 0) status(`  ${name}: ${i}/${CLAIMS} claims`);
      }
      status('');
      times.sort((a, b) => a - b);
      rows.push([name, quantile(times, 0.5), quantile(times, 0.99)]);
    }
    process.stdout.write(`\nclaim of a new job, ${CLAIMS} sequential claims each:\n`);
    for (const [name, p50, p99] of rows) {
      process.stdout.write(`  ${name.padEnd(28)} p50 ${ms(p50)}   p99 ${ms(p99)}\n`);
    }
    const waitStore = stores['WAIT 1 (Sentinel default)'];
    const accepted: string[] = [];
    for (let i = 0; i < BURST; i++) {
      const id = `burst${i}_best`;
      await waitStore.create('download', id, { url: 'http://x', quality: 'best' });
      accepted.push(id);
    }
    const killed = performance.now();
    await set.master.stop();
    let firstWriteMs = NaN;
    for (let i = 0; ; i++) {
      try {
        await waitStore.create('download', `after${i}_best`, { url: 'http://x', quality: 'best' });
        firstWriteMs = performance.now() - killed;
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
      if (performance.now() - killed > 60_000) break;
    }
    // The client may reconnect once more as the sentinels settle: ask until it answers.
    let kept = -1;
    for (let i = 0; i < 100 && kept < 0; i++) {
      kept = await redis.exists(...accepted.map((id) => `job:${id}`)).catch(() => -1);
      if (kept < 0) await new Promise((r) => setTimeout(r, 100));
    }
    process.stdout.write(
      `\nfailover (master stopped after ${BURST} accepted claims, sentinels: down-after 1 s):\n` +
        `  first successful claim on the promoted replica after ${(firstWriteMs / 1000).toFixed(2)} s\n` +
        `  accepted jobs the new master holds: ${kept} / ${BURST}\n`,
    );
  } finally {
    await closeRedis(redis);
    await set.close();
  }
}

await main();
