import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobStore, createRedis, type Redis } from '@media-jobs/libs';
import {
  makeMp4,
  startFixtureServer,
  startPlatform,
  type FixtureServer,
  waitUntil,
  type Platform,
} from '@media-jobs/libs/testing';
import { startDownloadWorker } from '../../download-worker/src/worker.js';
import { startJanitor } from '../../janitor/src/janitor.js';
import { startGateway, type Gateway } from '../src/gateway.js';

let platform: Platform;
let fixtures: FixtureServer;
let gateway: Gateway;
let worker: { stop(): Promise<void> } | undefined;
let redis: Redis;

beforeAll(async () => {
  platform = await startPlatform();
  fixtures = await startFixtureServer();
  fixtures.mount('mp4', join(await makeMp4({ width: 320, height: 180, seconds: 1 }), '..'));
  gateway = await startGateway(platform.config());
  worker = await startDownloadWorker(platform.config());
  redis = createRedis(platform.config());
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await gateway?.stop();
  redis?.disconnect();
  await fixtures?.close();
  await platform?.close();
});

type Sample = { name: string; labels: Record<string, string>; value: number };

/** The samples of a Prometheus text exposition (comments skipped). */
function parseMetrics(text: string): Sample[] {
  return text
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!m) throw new Error(`not an exposition line: ${line}`);
      const labels = Object.fromEntries(
        [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]),
      );
      return { name: m[1]!, labels, value: Number(m[3]) };
    });
}

async function scrape(): Promise<{ status: number; type: string | null; samples: Sample[] }> {
  const res = await fetch(`${gateway.url}/metrics`);
  return {
    status: res.status,
    type: res.headers.get('content-type'),
    samples: parseMetrics(await res.text()),
  };
}

/** The value of one series, or undefined when it is not exposed. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    ?.value;
}

async function metric(name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  return value((await scrape()).samples, name, labels);
}

async function submit(url: string) {
  const res = await fetch(`${gateway.url}/download`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url, quality: 'best' }),
  });
  return { status: res.status, body: (await res.json()) as any };
}

async function waitDone(id: string) {
  await expect
    .poll(async () => ((await (await fetch(`${gateway.url}/jobs/${id}`)).json()) as any).status, {
      timeout: 60_000,
      interval: 200,
    })
    .toMatch(/completed|failed/);
  return (await (await fetch(`${gateway.url}/jobs/${id}`)).json()) as any;
}

describe('GET /metrics', () => {
  it('when jobs have completed, failed and been hit in the cache, then the metrics show their counts, durations, cache, queue and disk', async () => {
    const ok = await submit(`${fixtures.origin}/mp4/video.mp4`);
    const bad = await submit(`${fixtures.origin}/mp4/missing.mp4`);
    expect([ok.status, bad.status]).toEqual([202, 202]);
    const done = await waitDone(ok.body.id);
    expect(done.status).toBe('completed');
    expect((await waitDone(bad.body.id)).status).toBe('failed');
    expect((await submit(`${fixtures.origin}/mp4/video.mp4`)).status).toBe(200);
    // The record is written before its event is published: let the gateway's subscription catch up.
    for (const type of ['completed', 'failed', 'cache_hit'])
      await expect
        .poll(() => metric('media_jobs_job_events_total', { kind: 'download', type }), { timeout: 5000 })
        .toBe(1);

    const res = await scrape();
    expect(res.status).toBe(200);
    expect(res.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const s = res.samples;
    for (const backend of ['redis', 'nats', 'jetstream', 'data_dir'])
      expect(value(s, 'media_jobs_backend_up', { backend }), backend).toBe(1);
    expect(value(s, 'media_jobs_jobs', { kind: 'download', status: 'completed' })).toBe(1);
    expect(value(s, 'media_jobs_jobs', { kind: 'download', status: 'failed' })).toBe(1);
    expect(value(s, 'media_jobs_jobs', { kind: 'download', status: 'queued' })).toBe(0);
    expect(value(s, 'media_jobs_jobs', { kind: 'normalize', status: 'completed' })).toBe(0);
    expect(value(s, 'media_jobs_jobs_counted')).toBe(2);
    expect(value(s, 'media_jobs_jobs_indexed', { state: 'live' })).toBe(2);
    expect(value(s, 'media_jobs_cache_requests_total', { kind: 'download', result: 'hit' })).toBe(1);
    expect(value(s, 'media_jobs_cache_requests_total', { kind: 'download', result: 'miss' })).toBe(2);
    expect(value(s, 'media_jobs_job_events_total', { kind: 'download', type: 'completed' })).toBe(1);
    expect(value(s, 'media_jobs_job_events_total', { kind: 'download', type: 'failed' })).toBe(1);
    expect(value(s, 'media_jobs_job_events_total', { kind: 'download', type: 'cache_hit' })).toBe(1);
    // The histogram holds the one completed job, with the duration its completed event reported.
    expect(value(s, 'media_jobs_job_duration_seconds_count', { kind: 'download' })).toBe(1);
    const seconds = value(s, 'media_jobs_job_duration_seconds_sum', { kind: 'download' })!;
    expect(seconds).toBeGreaterThan(0);
    expect(seconds).toBeLessThan(60);
    expect(value(s, 'media_jobs_job_duration_seconds_bucket', { kind: 'download', le: '+Inf' })).toBe(1);
    // Everything was acknowledged: nothing waits, nothing is in flight, the work queue is empty.
    for (const state of ['pending', 'ack_pending', 'redelivered'])
      expect(value(s, 'media_jobs_queue_messages', { consumer: 'download-worker', state }), state).toBe(0);
    expect(value(s, 'media_jobs_queue_messages', { consumer: 'normalize-worker', state: 'pending' })).toBe(0);
    expect(value(s, 'media_jobs_stream_messages', { stream: 'JOBS' })).toBe(0);
    expect(value(s, 'media_jobs_stream_messages', { stream: 'EVENTS' })).toBeGreaterThan(0);
    expect(value(s, 'media_jobs_disk_bytes', { folder: 'downloads' })).toBe(done.result.size_bytes);
    expect(value(s, 'media_jobs_disk_files', { folder: 'downloads' })).toBe(1);
    // Default process metrics are there too.
    expect(value(s, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(value(s, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
  });

  it('when no worker consumes, then a submitted job shows as pending in the consumer and stored in the JOBS stream', async () => {
    await worker?.stop();
    worker = undefined;
    const { status } = await submit(`${fixtures.origin}/mp4/video.mp4?waiting=1`);
    expect(status).toBe(202);
    const s = (await scrape()).samples;
    expect(value(s, 'media_jobs_queue_messages', { consumer: 'download-worker', state: 'pending' })).toBe(1);
    expect(value(s, 'media_jobs_stream_messages', { stream: 'JOBS' })).toBe(1);
    // Job counts are cached for a few seconds (a scrape reads no more than it must): wait for the refresh.
    await expect
      .poll(() => metric('media_jobs_jobs', { kind: 'download', status: 'queued' }), {
        timeout: 20_000,
        interval: 500,
      })
      .toBe(1);
  });

  it('when the janitor sweeps, then the last sweep and the sweep counters show what it removed', async () => {
    const janitor = await startJanitor(platform.config({ CLEANUP_INTERVAL_MINUTES: '10' }));
    try {
      // A job that expires a moment after it is made (after the start-up sweep), so this sweep removes it.
      const shortLived = new JobStore({ redis, ttlMs: 300 });
      await shortLived.claim('download', 'short_best', {});
      await waitUntil(
        'Redis to expire job:short_best',
        async () => (await redis.exists('job:short_best')) === 0,
      );
      const before = Date.now();
      const res = await fetch(`${gateway.url}/admin/cleanup`, { method: 'POST' });
      expect(res.status).toBe(200);
      const summary = (await res.json()) as any;
      expect(summary.removed.download).toBe(1);
      await expect.poll(() => metric('media_jobs_sweeps_total'), { timeout: 5000 }).toBe(2); // start-up sweep + this one
      const s = (await scrape()).samples;
      expect(value(s, 'media_jobs_sweep_removed_total', { kind: 'download' })).toBe(1);
      expect(value(s, 'media_jobs_sweep_last_removed', { kind: 'download' })).toBe(1);
      expect(value(s, 'media_jobs_sweep_last', { field: 'bytes_freed' })).toBe(summary.bytes_freed);
      expect(value(s, 'media_jobs_sweep_last', { field: 'duration_seconds' })).toBe(
        summary.duration_ms / 1000,
      );
      const at = value(s, 'media_jobs_sweep_last', { field: 'timestamp_seconds' })!;
      expect(at * 1000).toBeGreaterThanOrEqual(before - 1000);
      expect(at * 1000).toBeLessThanOrEqual(Date.now());
    } finally {
      await janitor.stop();
    }
  });

  it('when Redis is stopped, then /metrics still answers 200 quickly with redis down and the rest up, and recovers after', async () => {
    await platform.redis.stop();
    try {
      const started = Date.now();
      const res = await scrape();
      expect(Date.now() - started).toBeLessThan(5000);
      expect(res.status).toBe(200);
      expect(value(res.samples, 'media_jobs_backend_up', { backend: 'redis' })).toBe(0);
      expect(value(res.samples, 'media_jobs_backend_up', { backend: 'nats' })).toBe(1);
      expect(value(res.samples, 'media_jobs_backend_up', { backend: 'jetstream' })).toBe(1);
      expect(value(res.samples, 'media_jobs_stream_messages', { stream: 'JOBS' })).toBe(1);
    } finally {
      await platform.redis.start();
    }
    await expect
      .poll(() => metric('media_jobs_backend_up', { backend: 'redis' }), { timeout: 20_000, interval: 500 })
      .toBe(1);
  });
});
