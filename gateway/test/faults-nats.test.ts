import { join } from 'node:path';
import { readFile, readdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@media-jobs/libs';
import {
  NO_RATE_LIMITS,
  makeMp4,
  makeTone,
  postDownload,
  startFixtureServer,
  startPlatform,
  waitForJobs,
  waitUntil,
  type FixtureServer,
  type Platform,
} from '@media-jobs/libs/testing';
import { startDownloadWorker, type DownloadWorker } from '../../download-worker/src/worker.js';
import { startNormalizeWorker, type NormalizeWorker } from '../../normalize-worker/src/worker.js';
import { startGateway, type Gateway } from '../src/gateway.js';

let platform: Platform;
let fixtures: FixtureServer;
let gateway: Gateway;
let worker: DownloadWorker;
let normalizer: NormalizeWorker;
let tone: Buffer;

beforeAll(async () => {
  platform = await startPlatform();
  fixtures = await startFixtureServer();
  fixtures.mount('mp4', join(await makeMp4({ width: 320, height: 180, seconds: 1 }), '..'));
  const config = platform.config({ JOB_ACK_WAIT_SECONDS: '3', DOWNLOAD_CONCURRENCY: '4', ...NO_RATE_LIMITS });
  gateway = await startGateway(config);
  worker = await startDownloadWorker(config);
  normalizer = await startNormalizeWorker(config);
  countRedials(worker.ctx.nc, 'worker');
  countRedials(normalizer.ctx.nc, 'normalizer');
  const path = join(platform.dataDir, 'tone.wav');
  await makeTone(path);
  tone = await readFile(path);
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await normalizer?.stop();
  await gateway?.stop();
  await fixtures?.close();
  await platform?.close();
});

/** Reconnect attempts each worker's NATS client has made (its `reconnecting` status events). */
const redials = { worker: 0, normalizer: 0 };

function countRedials(nc: NatsConnection, who: keyof typeof redials): void {
  void (async () => {
    for await (const status of nc.status()) if (status.type === 'reconnecting') redials[who] += 1;
  })();
}

const videoUrl = (n: number) => `${fixtures.origin}/mp4/video.mp4?nats=${n}`;

/** An upload of the tone with its last sample changed, so each `n` is a new normalize job. */
async function postUpload(n: number): Promise<{ status: number; id?: string }> {
  const bytes = Buffer.from(tone);
  bytes.writeInt16LE(n, bytes.length - 2);
  const form = new FormData();
  form.append('operations[]', 'normalize_volume');
  form.append('file', new Blob([new Uint8Array(bytes)], { type: 'audio/wav' }), 'tone.wav');
  const res = await fetch(`${gateway.url}/normalize`, { method: 'POST', body: form });
  return { status: res.status, id: ((await res.json()) as { id?: string }).id };
}

async function ready(): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  const res = await fetch(`${gateway.url}/ready`);
  await res.arrayBuffer();
  return { status: res.status, ms: performance.now() - started };
}

describe('NATS stopped and restarted', () => {
  it('when NATS goes away under submissions, then the gateway answers 503 with Retry-After at once, and every accepted job completes after NATS returns', async () => {
    const accepted: string[] = [];
    let n = 0;
    // About a second per download: some jobs are running, some queued, when NATS stops.
    fixtures.throttle(60_000);
    for (let i = 0; i < 8; i++) {
      const res = await postDownload(gateway.url, videoUrl(n++));
      expect(res.status).toBe(202);
      accepted.push(res.id!);
    }
    const upload = await postUpload(1);
    expect(upload.status).toBe(202);
    accepted.push(upload.id!);
    const redialsBefore = { worker: redials.worker, normalizer: redials.normalizer };
    await platform.nats.stop();

    const refused = [];
    for (let i = 0; i < 10; i++) refused.push(await postDownload(gateway.url, videoUrl(n++)));
    for (const res of refused) {
      expect(res).toMatchObject({ status: 503, retryAfter: expect.stringMatching(/^\d+$/) });
      expect(res.body).toMatchObject({ error: { code: 'queue.unavailable' } });
      // At once, not after a NATS timeout (seconds): room for a loaded machine.
      expect(res.ms).toBeLessThan(2000);
    }
    const down = await ready();
    expect(down.status).toBe(503);
    expect(down.ms).toBeLessThan(500);
    // Down long enough for the workers' fetches and acks to fail, not just one blip: both
    // workers have tried to reconnect twice, and the downloads that were running when NATS
    // went away have ended (their acks went into the outage).
    await waitUntil(
      'both workers to redial NATS twice and the downloads to end',
      () =>
        redials.worker - redialsBefore.worker >= 2 &&
        redials.normalizer - redialsBefore.normalizer >= 2 &&
        worker.active === 0,
    );

    await platform.nats.start();
    await expect.poll(async () => (await ready()).status, { timeout: 15_000, interval: 200 }).toBe(200);
    fixtures.throttle(0);
    // Refused jobs left no record behind: the same URLs are now fresh 202s, not cache hits.
    for (let i = 0; i < 6; i++) {
      const res = await postDownload(gateway.url, videoUrl(i + 8));
      expect(res.status).toBe(202);
      accepted.push(res.id!);
    }
    const after = await postUpload(2);
    expect(after.status).toBe(202);
    accepted.push(after.id!);

    // The workers reconnected by themselves: every accepted job completes, the ones stored in
    // JetStream before the outage included.
    const done = await waitForJobs(gateway.url, accepted, 60_000);
    const statuses = [...done.values()].map((r) => r?.status);
    expect(statuses).toEqual(accepted.map(() => 'completed'));
    const files = await readdir(join(platform.dataDir, 'downloads'));
    expect(files).toHaveLength(accepted.length - 2);
    expect(await readdir(join(platform.dataDir, 'normalized'))).toHaveLength(2);
  });
});
