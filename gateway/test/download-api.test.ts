import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { request } from 'node:http';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Redis } from 'ioredis';
import { EXPIRY_INDEX, jobEventSchema, type JobEvent } from '@media-jobs/libs';
import { startPlatform, type Platform } from '@media-jobs/libs/testing';
import { startGateway, type Gateway } from '../src/gateway.js';

let platform: Platform;
let gateway: Gateway;
let privateGateway: Gateway;
let redis: Redis;
let nc: NatsConnection;
const events: { subject: string; event: JobEvent }[] = [];

/** One HTTP request with its path exactly as written (fetch would remove dot segments). */
function rawRequest(base: string, path: string, method: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  platform = await startPlatform();
  gateway = await startGateway(platform.config());
  privateGateway = await startGateway(platform.config({ ALLOW_PRIVATE_URLS: 'false' }));
  redis = new Redis(platform.redis.url);
  nc = await connect({ servers: platform.nats.url });
  nc.subscribe('events.job.>', {
    callback: (_err, msg) =>
      void events.push({ subject: msg.subject, event: jobEventSchema.parse(msg.json()) }),
  });
});

afterAll(async () => {
  await gateway?.stop();
  await privateGateway?.stop();
  redis?.disconnect();
  await nc?.close();
  await platform?.close();
});

async function post(base: string, body: unknown, contentType = 'application/json') {
  const res = await fetch(`${base}/download`, {
    method: 'POST',
    headers: { 'content-type': contentType },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

describe('POST /download input checks', () => {
  it.each([
    ['a body that is not JSON', '{"url": ', 'request.invalid_json'],
    ['a JSON array', '[1,2]', 'request.invalid'],
    ['a missing url', { quality: 'best' }, 'request.invalid'],
    ['a url that is not a string', { url: 42 }, 'request.invalid'],
    ['an overlong url', { url: `https://example.com/${'a'.repeat(2100)}` }, 'request.invalid'],
    ['an empty url', { url: '  ' }, 'download.invalid_url'],
    ['a relative url', { url: '/video.mp4' }, 'download.invalid_url'],
    ['an ftp url', { url: 'ftp://example.com/a.mp4' }, 'download.invalid_url'],
    ['a file url', { url: 'file:///etc/passwd' }, 'download.invalid_url'],
    ['a url starting with -', { url: '--exec=rm -rf /' }, 'download.invalid_url'],
    ['an unknown quality', { url: 'https://example.com/a.mp4', quality: '721p' }, 'request.invalid'],
  ])('when the request has %s, then it is a 400 with a clear error', async (_name, body, code) => {
    const res = await post(gateway.url, body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe(code);
    expect(res.body.error.message.length).toBeGreaterThan(5);
  });

  it('when the body is sent as text/plain, then it is a 400 and not a crash', async () => {
    const res = await post(gateway.url, '{"url":"https://example.com/a.mp4"}', 'text/plain');
    expect(res.status).toBe(400);
  });

  it.each([
    'http://127.0.0.1:8080/a.mp4',
    'http://localhost/a.mp4',
    'http://api.localhost/a.mp4',
    'http://10.1.2.3/a.mp4',
    'http://172.20.0.5/a.mp4',
    'http://192.168.1.1/a.mp4',
    'http://169.254.169.254/latest/meta-data',
    'http://[::1]/a.mp4',
    'http://[fe80::1]/a.mp4',
    'http://[::ffff:127.0.0.1]/a.mp4',
    'http://0.0.0.0/a.mp4',
  ])('when ALLOW_PRIVATE_URLS is false and the url is %s, then it is a 400', async (url) => {
    const res = await post(privateGateway.url, { url });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('download.private_url');
  });

  it.each([
    [
      'with a UTF-8 BOM',
      () =>
        Buffer.concat([
          Buffer.from([0xef, 0xbb, 0xbf]),
          Buffer.from(JSON.stringify({ url: 'http://127.0.0.1:9/bom.mp4' })),
        ]),
      {},
    ],
    [
      'as application/json; charset=utf-8',
      () => JSON.stringify({ url: 'http://127.0.0.1:9/charset.mp4' }),
      { 'content-type': 'application/json; charset=utf-8' },
    ],
    [
      'gzip-compressed',
      () => gzipSync(JSON.stringify({ url: 'http://127.0.0.1:9/gzip.mp4' })),
      { 'content-encoding': 'gzip' },
    ],
  ])(
    'when a valid body comes %s, then it is read as the plain JSON body would be',
    async (_name, body, headers) => {
      const res = await fetch(`${gateway.url}/download`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: body(),
      });
      expect(res.status).toBe(202);
      const created = (await res.json()) as { id: string };
      // The same URL as a plain JSON body names the same job: a cache hit.
      const raw = 'content-encoding' in headers ? gunzipSync(body()) : Buffer.from(body());
      const { url } = JSON.parse(raw.toString().replace(/^\uFEFF/, '')) as { url: string };
      const again = await post(gateway.url, { url });
      expect(again.status).toBe(200);
      expect(again.body.id).toBe(created.id);
      expect(again.body.cache_hit).toBe(true);
    },
  );

  it('when a valid body comes chunked (no Content-Length), then the job is created', async () => {
    const text = JSON.stringify({ url: 'http://127.0.0.1:9/chunked.mp4' });
    const res = await fetch(`${gateway.url}/download`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode(text.slice(0, 10)));
          c.enqueue(new TextEncoder().encode(text.slice(10)));
          c.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(202);
    const again = await post(gateway.url, JSON.parse(text));
    expect(again.body.id).toBe(((await res.json()) as { id: string }).id);
  });

  it.each([
    ['a JSON number at the top', '123', {}, 400, 'request.invalid_json'],
    ['a JSON string at the top', '"https://example.com/a.mp4"', {}, 400, 'request.invalid_json'],
    ['an empty body', '', {}, 400, 'request.invalid'],
    [
      'a latin1 charset',
      '{"url":"https://example.com/a.mp4"}',
      { 'content-type': 'application/json; charset=latin1' },
      415,
      'request.unsupported_encoding',
    ],
    [
      'an unknown content encoding',
      '{"url":"https://example.com/a.mp4"}',
      { 'content-encoding': 'compress' },
      415,
      'request.unsupported_encoding',
    ],
  ])('when the request has %s, then it is a %i %s', async (_name, body, headers, status, code) => {
    const res = await fetch(`${gateway.url}/download`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body,
    });
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
  });

  it('when the body is over the size limit, then it is a 413', async () => {
    const res = await post(gateway.url, { url: 'https://example.com/a.mp4', pad: 'x'.repeat(40_000) });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('request.too_large');
  });

  it.each(['bad$id', 'a.b', '..', 'x'.repeat(129), 'id%20with%20space'])(
    'when a path id is %s, then it is a 400 before any lookup',
    async (id) => {
      for (const [method, suffix] of [
        ['GET', ''],
        ['GET', '/file'],
        ['DELETE', ''],
      ] as const) {
        const res = await rawRequest(gateway.url, `/jobs/${id}${suffix}`, method);
        expect(res.status).toBe(400);
        expect((JSON.parse(res.body) as any).error.code).toBe('job.invalid_id');
      }
    },
  );
});

describe('POST /download submissions', () => {
  it('when a url is submitted, then 202 with a queued record, a TTL that agrees with expires_at, a queue message and a queued event', async () => {
    const res = await post(gateway.url, { url: 'https://example.com/clip.mp4?b=2&a=1', quality: '720p' });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ kind: 'download', status: 'queued', progress: 0, cache_hit: false });
    expect(res.body.id).toMatch(/^u[0-9a-f]{16}_720p$/);
    const pttl = await redis.pttl(`job:${res.body.id}`);
    expect(Math.abs(pttl - (Date.parse(res.body.expires_at) - Date.now()))).toBeLessThan(1000);
    expect(Number(await redis.zscore(EXPIRY_INDEX, `job:${res.body.id}`))).toBe(
      Date.parse(res.body.expires_at),
    );
    await expect
      .poll(() => events.some((e) => e.subject === `events.job.download.${res.body.id}.queued`))
      .toBe(true);

    const again = await post(gateway.url, { url: 'https://EXAMPLE.com/clip.mp4?a=1&b=2#x', quality: '720p' });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ id: res.body.id, cache_hit: true, created_at: res.body.created_at });
    await expect
      .poll(() => events.some((e) => e.subject === `events.job.download.${res.body.id}.cache_hit`))
      .toBe(true);
  });

  it('when no quality is given, then it is best', async () => {
    const res = await post(gateway.url, { url: 'https://youtu.be/dQw4w9WgXcQ' });
    expect(res.status).toBe(202);
    expect(res.body.id).toBe('dQw4w9WgXcQ_best');
  });

  it('when 50 identical submissions race, then one job is created and 49 are cache hits', async () => {
    const url = 'https://example.com/race.mp4';
    const results = await Promise.all(
      Array.from({ length: 50 }, () => post(gateway.url, { url, quality: '360p' })),
    );
    expect(results.filter((r) => r.status === 202)).toHaveLength(1);
    expect(results.filter((r) => r.status === 200 && r.body.cache_hit === true)).toHaveLength(49);
    expect(new Set(results.map((r) => r.body.created_at)).size).toBe(1);
  });

  it('when a job is not completed, then its file is a 409 and the record is readable', async () => {
    const { body } = await post(gateway.url, { url: 'https://example.com/pending.mp4' });
    const file = await fetch(`${gateway.url}/jobs/${body.id}/file`);
    expect(file.status).toBe(409);
    expect(((await file.json()) as any).error.code).toBe('job.not_ready');
    const get = await fetch(`${gateway.url}/jobs/${body.id}`);
    expect(get.status).toBe(200);
    expect(((await get.json()) as any).status).toBe('queued');
  });

  it('when a job is deleted, then its record and index entry are gone, a deleted event is sent and it is a 404 after', async () => {
    const { body } = await post(gateway.url, { url: 'https://example.com/delete-me.mp4' });
    const del = await fetch(`${gateway.url}/jobs/${body.id}`, { method: 'DELETE' });
    expect(del.status).toBe(200);
    expect(await del.json()).toMatchObject({ id: body.id, deleted: true });
    expect(await redis.exists(`job:${body.id}`)).toBe(0);
    expect(await redis.zscore(EXPIRY_INDEX, `job:${body.id}`)).toBeNull();
    await expect
      .poll(() => events.some((e) => e.subject === `events.job.download.${body.id}.deleted`))
      .toBe(true);
    expect((await fetch(`${gateway.url}/jobs/${body.id}`)).status).toBe(404);
    expect((await fetch(`${gateway.url}/jobs/${body.id}`, { method: 'DELETE' })).status).toBe(404);
  });

  it('when a job expired but the sweep has not run, then it is a 410', async () => {
    await redis.zadd(EXPIRY_INDEX, Date.now() - 1000, 'job:gone12345ab_best');
    const res = await fetch(`${gateway.url}/jobs/gone12345ab_best`);
    expect(res.status).toBe(410);
    expect(((await res.json()) as any).error.code).toBe('job.expired');
  });

  it('when jobs are listed, then filters and the limit apply and bad filters are a 400', async () => {
    const res = await fetch(`${gateway.url}/jobs?kind=download&status=queued&limit=2`);
    expect(res.status).toBe(200);
    const page = (await res.json()) as any;
    expect(page.jobs).toHaveLength(2);
    expect(page.jobs.every((j: any) => j.kind === 'download' && j.status === 'queued')).toBe(true);
    expect(page.next_cursor).not.toBeNull();
    for (const q of ['kind=video', 'status=done', 'limit=0', 'limit=1000', 'limit=abc', 'cursor=x']) {
      expect((await fetch(`${gateway.url}/jobs?${q}`)).status).toBe(400);
    }
  });

  it('when an unknown route or job is asked for, then it is a JSON 404', async () => {
    const route = await fetch(`${gateway.url}/nothing`);
    expect(route.status).toBe(404);
    expect(((await route.json()) as any).error.code).toBe('route.not_found');
    const job = await fetch(`${gateway.url}/jobs/abcdefghijk_best`);
    expect(job.status).toBe(404);
    expect(((await job.json()) as any).error.code).toBe('job.not_found');
  });
});

describe('health', () => {
  it('when NATS, Redis and DATA_DIR answer, then /health and /ready are 200', async () => {
    expect((await fetch(`${gateway.url}/health`)).status).toBe(200);
    const ready = await fetch(`${gateway.url}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      status: 'ready',
      checks: { nats: { ok: true }, redis: { ok: true }, data_dir: { ok: true } },
    });
  });
});
