import { dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { AppError, CACHE_STATS_KEY, probeSource } from '@media-jobs/libs';
import {
  makeHls,
  makeMp4,
  startFixtureServer,
  startPlatform,
  waitUntil,
  type FixtureServer,
  type Platform,
} from '@media-jobs/libs/testing';
import { startDownloadWorker } from '../../download-worker/src/worker.js';
import { startGateway, type Gateway } from '../src/gateway.js';
import { fetchDocCheck, type DocCheck } from './openapi-check.js';

let platform: Platform;
let fixtures: FixtureServer;
let gateway: Gateway;
let privateGateway: Gateway;
let keyedGateway: Gateway;
let worker: { stop(): Promise<void> };
let redis: Redis;
let check: DocCheck;
let mp4: string;

const KEY = 'probe-test-key-0123456789';

beforeAll(async () => {
  platform = await startPlatform();
  fixtures = await startFixtureServer();
  fixtures.mount('hls', await makeHls([1080, 720, 360], 3));
  mp4 = await makeMp4({ width: 640, height: 360, seconds: 2 });
  fixtures.mount('mp4', dirname(mp4));
  gateway = await startGateway(platform.config());
  privateGateway = await startGateway(platform.config({ ALLOW_PRIVATE_URLS: 'false' }));
  keyedGateway = await startGateway(platform.config({ API_KEYS: KEY }));
  worker = await startDownloadWorker(platform.config());
  redis = new Redis(platform.redis.url);
  check = await fetchDocCheck(gateway.url);
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await Promise.all([gateway?.stop(), privateGateway?.stop(), keyedGateway?.stop()]);
  redis?.disconnect();
  await fixtures?.close();
  await platform?.close();
});

async function probe(
  query: Record<string, string>,
  base = gateway.url,
  headers: Record<string, string> = {},
) {
  const res = await fetch(`${base}/probe?${new URLSearchParams(query)}`, { headers });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

async function submit(url: string, quality: string) {
  const res = await fetch(`${gateway.url}/download`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url, quality }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

describe('GET /probe', () => {
  it('when an HLS master is probed, then it gives the ids a submission would get, no job, and the renditions each quality selects', async () => {
    const url = `${fixtures.origin}/hls/master.m3u8?b=2&a=1`;
    const statsBefore = await redis.hgetall(CACHE_STATS_KEY);
    const res = await probe({ url, quality: '720p' });
    expect(res.status).toBe(200);
    check.response('/probe', 'get', 200, res.body);
    expect(res.body).toMatchObject({
      quality: '720p',
      source: 'url',
      fetch_url: `${fixtures.origin}/hls/master.m3u8?a=1&b=2`,
      cached: false,
      status: null,
      title: 'master',
      extractor: 'generic',
      source_error: null,
    });
    expect(res.body.media_id).toMatch(/^u[0-9a-f]{16}$/);
    expect(res.body.job_id).toBe(`${res.body.media_id}_720p`);
    expect(res.body.duration_s).toBeGreaterThan(2);
    expect(res.body.qualities).toEqual([
      { quality: 'best', width: 1920, height: 1080 },
      { quality: '1080p', width: 1920, height: 1080 },
      { quality: '720p', width: 1280, height: 720 },
      { quality: '360p', width: 640, height: 360 },
      { quality: 'worst', width: 640, height: 360 },
      { quality: 'audio', width: null, height: null },
    ]);
    // Nothing was created or counted.
    expect((await fetch(`${gateway.url}/jobs/${res.body.job_id}`)).status).toBe(404);
    expect(await redis.hgetall(CACHE_STATS_KEY)).toEqual(statsBefore);

    // The job a submission then gets is the one the probe named, and the probe sees it.
    const posted = await submit(url, '720p');
    expect(posted).toMatchObject({ status: 202, body: { id: res.body.job_id } });
    await waitUntil(
      `job ${posted.body.id} to complete`,
      async () => ((await (await fetch(`${gateway.url}/jobs/${posted.body.id}`)).json()) as any).status,
      { timeoutMs: 60_000, intervalMs: 100, until: (s) => s === 'completed' || s === 'failed' },
    );
    const again = await probe({ url: `${fixtures.origin}/hls/master.m3u8?a=1&b=2#x`, quality: '720p' });
    expect(again.body).toMatchObject({ job_id: res.body.job_id, cached: true, status: 'completed' });
  });

  it('when a plain file is probed without a quality, then it is best, and sizes yt-dlp does not know are null', async () => {
    const res = await probe({ url: `${fixtures.origin}/mp4/${mp4.split('/').at(-1)}` });
    expect(res.status).toBe(200);
    check.response('/probe', 'get', 200, res.body);
    expect(res.body).toMatchObject({ quality: 'best', source_error: null });
    expect(res.body.job_id).toMatch(/^u[0-9a-f]{16}_best$/);
    expect(res.body.qualities).toEqual([{ quality: 'best', width: null, height: null }]);
  });

  it('when the source answers 404, then the probe is a 200 that says why a download would fail', async () => {
    const res = await probe({ url: `${fixtures.origin}/mp4/missing.mp4` });
    expect(res.status).toBe(200);
    check.response('/probe', 'get', 200, res.body);
    expect(res.body.source_error).toMatchObject({ code: 'source.unavailable' });
    expect(res.body).toMatchObject({ title: null, duration_s: null, qualities: [] });
  });

  it.each([
    [{}, 'request.invalid_query'],
    [{ url: 'https://example.com/a.mp4', quality: '999p' }, 'request.invalid_query'],
    [{ url: 'ftp://example.com/a.mp4' }, 'download.invalid_url'],
    [{ url: 'https://user:pw@example.com/a.mp4' }, 'download.invalid_url'],
    [{ url: 'https://www.youtube.com/playlist?list=PLsyOSbh5bs16vubvKePAQ1x3PhKavfBIl' }, 'url.playlist'],
    [
      { url: 'https://www.youtube.com/embed/videoseries?list=PL6IaIsEjSbf96XFRuNccS_RuEXwNdsoEu' },
      'url.playlist',
    ],
    [{ url: 'https://www.youtube.com/watch?v=N_708QY7Ob' }, 'url.not_a_video'],
  ])('when the query is %j, then it is the 400 %s a submission would get', async (query, code) => {
    const res = await probe(query as Record<string, string>);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe(code);
    check.response('/probe', 'get', 400, res.body);
  });

  it('when ALLOW_PRIVATE_URLS is false and the fixture is on 127.0.0.1, then it is a 400 download.private_url and yt-dlp never runs', async () => {
    const before = fixtures.count('/hls/');
    const res = await probe({ url: `${fixtures.origin}/hls/master.m3u8` }, privateGateway.url);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('download.private_url');
    expect(fixtures.count('/hls/')).toBe(before);
  });

  it('when yt-dlp is led to an address the egress policy refuses, then the probe fails with download.private_url', async () => {
    // The name passed the submission check; every connection still goes through the proxy.
    const err = await probeSource({
      ytDlpPath: platform.config().ytDlpPath,
      url: `${fixtures.origin}/hls/master.m3u8`,
      timeoutMs: 20_000,
      egress: { allowAddress: () => false },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: 'download.private_url', status: 400 });
  });

  it('when API_KEYS is set, then /probe needs a key like a submission', async () => {
    const url = `${fixtures.origin}/mp4/missing.mp4`;
    expect((await probe({ url }, keyedGateway.url)).status).toBe(401);
    const keyed = await probe({ url }, keyedGateway.url, { authorization: `Bearer ${KEY}` });
    expect(keyed.status).toBe(200);
  });
});
