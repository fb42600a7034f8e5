import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { downloadResultSchema, jobEventSchema, type JobEvent } from '@media-jobs/libs';
import {
  ffprobe,
  makeHls,
  makeMp4,
  startFixtureServer,
  startPlatform,
  type FixtureServer,
  type Platform,
} from '@media-jobs/libs/testing';
import { startDownloadWorker } from '../../download-worker/src/worker.js';
import { startGateway, type Gateway } from '../src/gateway.js';
import { fetchDocCheck, type DocCheck } from './openapi-check.js';

let platform: Platform;
let fixtures: FixtureServer;
let gateway: Gateway;
let worker: { stop(): Promise<void> };
let redis: Redis;
let nc: NatsConnection;
let check: DocCheck;
const events: JobEvent[] = [];

beforeAll(async () => {
  platform = await startPlatform();
  fixtures = await startFixtureServer();
  fixtures.mount('hls', await makeHls([1080, 720, 360], 3));
  fixtures.mount('mp4', join(await makeMp4({ width: 640, height: 360, seconds: 2 }), '..'));
  // Heartbeats every 200 ms, so a stream of a second or two shows some.
  const config = platform.config({ SSE_HEARTBEAT_SECONDS: '0.2' });
  gateway = await startGateway(config);
  worker = await startDownloadWorker(config);
  redis = new Redis(platform.redis.url);
  nc = await connect({ servers: platform.nats.url });
  nc.subscribe('events.job.>', { callback: (_e, m) => void events.push(jobEventSchema.parse(m.json())) });
  check = await fetchDocCheck(gateway.url);
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await gateway?.stop();
  redis?.disconnect();
  await nc?.close();
  await fixtures?.close();
  await platform?.close();
});

async function submit(url: string, quality?: string) {
  const res = await fetch(`${gateway.url}/download`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(quality ? { url, quality } : { url }),
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

/** Reads an SSE stream until it ends; returns the event names with their data, heartbeats as `heartbeat`. */
async function readSse(url: string): Promise<{ event: string; data: any }[]> {
  const res = await fetch(url);
  expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
  const text = await res.text();
  return text
    .split('\n\n')
    .filter((block) => block.startsWith('event:') || block.startsWith(': heartbeat'))
    .map((block) => {
      if (block.startsWith(':')) return { event: 'heartbeat', data: null };
      const [eventLine, dataLine] = block.split('\n');
      return { event: eventLine!.slice(7), data: JSON.parse(dataLine!.slice(6)) };
    });
}

describe('download end to end', () => {
  it('when an HLS URL is submitted at 720p, then the SSE stream shows state, start, progress and completion and the file has 720 lines', async () => {
    const url = `${fixtures.origin}/hls/master.m3u8`;
    // A second or two of downloading: long enough for progress and heartbeats.
    fixtures.throttle(1_500_000);
    const { status, body } = await submit(url, '720p');
    expect(status).toBe(202);
    const stream = await readSse(`${gateway.url}/jobs/${body.id}/events`);
    fixtures.throttle(0);
    expect(stream[0]).toMatchObject({ event: 'state', data: { id: body.id, kind: 'download' } });
    expect(['queued', 'processing']).toContain(stream[0]?.data.status);
    const names = stream.map((s) => s.event);
    expect(names).toContain('progress');
    expect(names).toContain('heartbeat');
    if (stream[0]?.data.status === 'queued') expect(names).toContain('started');
    expect(names.at(-1)).toBe('completed');
    const rises = stream.filter((s) => s.event === 'progress').map((s) => s.data.progress as number);
    expect(rises).toEqual([...rises].sort((a, b) => a - b));

    const job = await waitDone(body.id);
    expect(job.status).toBe('completed');
    expect(job.result).toMatchObject({ file: `${body.id}.mp4`, height: 720 });
    expect(job.result.size_bytes).toBeGreaterThan(1000);
    // The result is what the document promises, in the job and in the completed event, with no field left out of it.
    expect(downloadResultSchema.parse(job.result)).toEqual(job.result);
    check.response('/jobs/{id}', 'get', 200, job);
    check.component('JobEvent', stream.at(-1)?.data);
    expect(stream.at(-1)?.data.result).toEqual(job.result);
    const pttl = await redis.pttl(`job:${body.id}`);
    expect(Math.abs(pttl - (Date.parse(job.expires_at) - Date.now()))).toBeLessThan(1000);

    const file = await fetch(`${gateway.url}/jobs/${body.id}/file`);
    expect(file.status).toBe(200);
    expect(file.headers.get('content-disposition')).toContain(`${body.id}.mp4`);
    const bytes = Buffer.from(await file.arrayBuffer());
    expect(bytes.length).toBe(job.result.size_bytes);
    const local = join(tmpdir(), `${body.id}-${process.pid}.mp4`);
    await writeFile(local, bytes);
    const probe = await ffprobe(local);
    expect(probe.streams.find((s) => s.codec_type === 'video')?.height).toBe(720);

    const range = await fetch(`${gateway.url}/jobs/${body.id}/file`, { headers: { range: 'bytes=10-109' } });
    expect(range.status).toBe(206);
    expect(range.headers.get('content-range')).toBe(`bytes 10-109/${job.result.size_bytes}`);
    expect(Buffer.from(await range.arrayBuffer())).toEqual(bytes.subarray(10, 110));
  });

  it('when 50 identical submissions race, then one job is made and yt-dlp runs once', async () => {
    // One yt-dlp run makes a fixed number of requests (the generic extractor probes, then
    // downloads): measure it on a job of its own, then expect exactly that many for the race.
    const solo = await submit(`${fixtures.origin}/mp4/video.mp4?solo=1`, '360p');
    let before = fixtures.count('/mp4/video.mp4');
    expect((await waitDone(solo.body.id)).status).toBe('completed');
    const perRun = fixtures.count('/mp4/video.mp4') - before;
    expect(perRun).toBeGreaterThanOrEqual(1);

    const url = `${fixtures.origin}/mp4/video.mp4?race=1`;
    before = fixtures.count('/mp4/video.mp4');
    const results = await Promise.all(Array.from({ length: 50 }, () => submit(url, '360p')));
    expect(results.filter((r) => r.status === 202)).toHaveLength(1);
    expect(results.filter((r) => r.status === 200 && r.body.cache_hit)).toHaveLength(49);
    const id = results[0]!.body.id as string;
    expect(results.every((r) => r.body.id === id)).toBe(true);
    const job = await waitDone(id);
    expect(job.status).toBe('completed');
    expect(job.attempts).toBe(1);
    expect(events.filter((e) => e.job_id === id && e.type === 'started')).toHaveLength(1);
    expect(events.filter((e) => e.job_id === id && e.type === 'cache_hit')).toHaveLength(49);
    expect(fixtures.count('/mp4/video.mp4') - before).toBe(perRun);

    const again = await submit(url, '360p');
    expect(again).toMatchObject({ status: 200, body: { id, status: 'completed', cache_hit: true } });
  });

  it('when a completed job is deleted, then its file is removed and a second SSE reader gets the state only', async () => {
    const { body } = await submit(`${fixtures.origin}/mp4/video.mp4?del=1`, 'best');
    const job = await waitDone(body.id);
    expect(job.status).toBe('completed');
    const stream = await readSse(`${gateway.url}/jobs/${body.id}/events`);
    expect(stream.map((s) => s.event)).toEqual(['state']);
    const del = (await (await fetch(`${gateway.url}/jobs/${body.id}`, { method: 'DELETE' })).json()) as any;
    expect(del.files).toEqual([job.result.file]);
    expect(del.bytes_freed).toBe(job.result.size_bytes);
    expect((await fetch(`${gateway.url}/jobs/${body.id}/file`)).status).toBe(404);
  });

  it('when a running job is deleted, then its live SSE stream ends with the deleted event', async () => {
    fixtures.throttle(100_000);
    try {
      const { body } = await submit(`${fixtures.origin}/mp4/video.mp4?live-delete=1`, 'best');
      const reading = readSse(`${gateway.url}/jobs/${body.id}/events`);
      await expect
        .poll(async () => ((await (await fetch(`${gateway.url}/jobs/${body.id}`)).json()) as any).status, {
          timeout: 20_000,
          interval: 100,
        })
        .toBe('processing');
      expect((await fetch(`${gateway.url}/jobs/${body.id}`, { method: 'DELETE' })).status).toBe(200);
      const stream = await reading;
      expect(stream[0]?.event).toBe('state');
      expect(stream.at(-1)).toMatchObject({ event: 'deleted', data: { job_id: body.id, type: 'deleted' } });
    } finally {
      fixtures.throttle(0);
    }
  });

  it('when the URL cannot be fetched, then the job fails once with a clear message and a resubmission queues it again', async () => {
    const { body } = await submit(`${fixtures.origin}/mp4/missing.mp4`, 'best');
    const job = await waitDone(body.id);
    expect(job.status).toBe('failed');
    expect(job.attempts).toBe(1);
    expect(job.error.message).toMatch(/404/);
    expect(job.result).toBeUndefined();
    check.response('/jobs/{id}', 'get', 200, job);
    const again = await submit(`${fixtures.origin}/mp4/missing.mp4`, 'best');
    expect(again.status).toBe(202);
    expect(again.body).toMatchObject({ id: body.id, status: 'queued', cache_hit: false });
    await waitDone(body.id);
  });
});
