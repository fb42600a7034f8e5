import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jobEventSchema, type JobEvent } from '@media-jobs/libs';
import {
  makeMp4,
  startFixtureServer,
  startPlatform,
  waitUntil,
  type FixtureServer,
  type Platform,
} from '@media-jobs/libs/testing';
import { startDownloadWorker } from '../../download-worker/src/worker.js';
import { startGateway, type Gateway } from '../src/gateway.js';

let platform: Platform;
let fixtures: FixtureServer;
let gateway: Gateway;
let worker: { stop(): Promise<void> };
let nc: NatsConnection;
let video: string;
const events: JobEvent[] = [];

beforeAll(async () => {
  platform = await startPlatform();
  fixtures = await startFixtureServer();
  video = await makeMp4({ width: 640, height: 360, seconds: 2 });
  fixtures.mount('mp4', dirname(video));
  const config = platform.config();
  gateway = await startGateway(config);
  worker = await startDownloadWorker(config);
  nc = await connect({ servers: platform.nats.url });
  nc.subscribe('events.job.download.>', {
    callback: (_e, m) => void events.push(jobEventSchema.parse(m.json())),
  });
  await nc.flush();
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await gateway?.stop();
  await nc?.close();
  await fixtures?.close();
  await platform?.close();
});

async function submit(url: string) {
  const res = await fetch(`${gateway.url}/download`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url, quality: '360p' }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

const sha = (bytes: Buffer | Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const eventsOf = (id: string, type: JobEvent['type']) =>
  events.filter((e) => e.job_id === id && e.type === type);

describe('one media, one job, whatever the URL form', () => {
  it('when two URL forms of one fixture video are submitted at once, then they share one job, one yt-dlp run and one file', async () => {
    const path = `/mp4/${basename(video)}`;
    // Different bytes, one canonical URL: scheme case, query order, a utm_* parameter, a fragment.
    const forms = [
      `${fixtures.origin}${path}?b=2&a=1#t=1`,
      `${fixtures.origin.replace('http://', 'HTTP://')}${path}?a=1&utm_source=newsletter&b=2`,
    ];
    const answers = await Promise.all(forms.map(submit));
    expect(answers.map((a) => a.status).sort()).toEqual([200, 202]);
    const id = String(answers[0]?.body.id);
    expect(id).toMatch(/^u[0-9a-f]{16}_360p$/);
    expect(answers[1]?.body.id).toBe(id);

    const done = await waitUntil(
      `job ${id} to end`,
      async () => (await (await fetch(`${gateway.url}/jobs/${id}`)).json()) as Record<string, any>,
      {
        timeoutMs: 60_000,
        intervalMs: 100,
        until: (job) => job.status === 'completed' || job.status === 'failed',
      },
    );
    expect(done).toMatchObject({ status: 'completed', attempts: 1 });
    // One run of the handler is one yt-dlp run: one `started`, one `completed`.
    await waitUntil(`the completed event of ${id}`, () => eventsOf(id, 'completed').length === 1);
    expect(eventsOf(id, 'started')).toHaveLength(1);
    const requestsAfterRun = fixtures.count(path);
    expect(requestsAfterRun).toBeGreaterThan(0);

    // Asking again in either form is the same job, and the source is not asked again.
    for (const url of forms) {
      const again = await submit(url);
      expect(again).toMatchObject({ status: 200, body: { id, cache_hit: true, status: 'completed' } });
    }
    expect(fixtures.count(path)).toBe(requestsAfterRun);
    expect(eventsOf(id, 'started')).toHaveLength(1);

    // The file under the id is the fixture itself, byte for byte.
    const file = await fetch(`${gateway.url}/jobs/${id}/file`);
    expect(file.status).toBe(200);
    expect(sha(new Uint8Array(await file.arrayBuffer()))).toBe(sha(await readFile(video)));
  });

  it('when a fixture URL differs in a real parameter, then it is another job', async () => {
    const path = `/mp4/${basename(video)}`;
    const [a, b] = await Promise.all([
      submit(`${fixtures.origin}${path}?take=1`),
      submit(`${fixtures.origin}${path}?take=2`),
    ]);
    expect([a?.status, b?.status]).toEqual([202, 202]);
    expect(a?.body.id).not.toBe(b?.body.id);
  });
});
