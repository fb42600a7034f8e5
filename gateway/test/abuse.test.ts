import { readdir } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { ConfigError, loadConfig } from '@media-jobs/libs';
import { startPlatform, type Platform } from '@media-jobs/libs/testing';
import { startGateway, type Gateway } from '../src/gateway.js';
import {
  DOCS_CONTENT_SECURITY_POLICY,
  contentSecurityPolicy,
  securityHeaders,
} from '../src/security-headers.js';

const KEY_A = 'key-a-0123456789abcdef';
const KEY_B = 'key-b-0123456789abcdef';

let platform: Platform;
let limited: Gateway;
let replica: Gateway;
let behindProxy: Gateway;
let keyed: Gateway;
let redis: Redis;

beforeAll(async () => {
  platform = await startPlatform();
  const limits = { RATE_LIMIT_PER_MINUTE: '3', RATE_LIMIT_READS_PER_MINUTE: '5' };
  // Two replicas of one deployment: the same Redis, so one budget per client.
  limited = await startGateway(platform.config(limits));
  replica = await startGateway(platform.config(limits));
  behindProxy = await startGateway(platform.config({ ...limits, TRUST_PROXY: 'loopback' }));
  keyed = await startGateway(platform.config({ ...limits, API_KEYS: `${KEY_A}, ${KEY_B}` }));
  redis = new Redis(platform.redis.url);
});

afterAll(async () => {
  await Promise.all([limited, replica, behindProxy, keyed].map((g) => g?.stop()));
  redis?.disconnect();
  await platform?.close();
});

beforeEach(async () => {
  // Every test starts with fresh budgets.
  const keys = await redis.keys('ratelimit:*');
  if (keys.length > 0) await redis.del(...keys);
});

const submit = (base: string, headers: Record<string, string> = {}, path = '/download') =>
  fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ url: 'http://127.0.0.1:9/abuse.mp4', quality: '360p' }),
  });

describe('rate limiting', () => {
  it('when a client submits more than RATE_LIMIT_PER_MINUTE, then it gets 429 rate_limited with Retry-After and RateLimit headers', async () => {
    const first = await submit(limited.url);
    expect(first.status).toBe(202);
    // draft-8 fields; `pk` is a hash of the client's partition key.
    expect(first.headers.get('ratelimit-policy')).toMatch(/^"submissions"; q=3; w=60; pk=:[A-Za-z0-9+/=]+:$/);
    expect(first.headers.get('ratelimit')).toMatch(/^"submissions"; r=2; t=\d+$/);
    await submit(limited.url);
    await submit(limited.url);
    const refused = await submit(limited.url);
    expect(refused.status).toBe(429);
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(refused.headers.get('ratelimit')).toMatch(/^"submissions"; r=0; t=\d+$/);
    const body = (await refused.json()) as {
      error: { code: string; message: string; details: Record<string, unknown> };
    };
    expect(body.error).toMatchObject({
      code: 'rate_limited',
      details: { policy: 'submissions', limit: 3, window_s: 60 },
    });
  });

  it('when a client spreads its submissions over two replicas, then they share one budget in Redis', async () => {
    expect((await submit(limited.url)).status).toBeLessThan(300);
    expect((await submit(replica.url)).status).toBeLessThan(300);
    expect((await submit(limited.url)).status).toBeLessThan(300);
    expect((await submit(replica.url)).status).toBe(429);
    expect(await redis.keys('ratelimit:submissions:*')).toHaveLength(1);
  });

  it('when submissions are exhausted, then reads still answer, and reads have their own limit', async () => {
    for (let i = 0; i < 4; i++) await submit(limited.url);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await fetch(`${limited.url}/jobs?limit=1`)).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
  });

  it('when a client sends bad bodies or reads job ids, then each still counts, and past the limit it is a 429 first', async () => {
    // POST /download and GET /jobs/:id count in the round trip of their own read; a request
    // that ends before it (a 400 body, a 400 id, a 404) is counted all the same.
    const bad = () =>
      fetch(`${limited.url}/download`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"url": 1}',
      });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await bad()).status);
    statuses.push((await bad()).status, (await submit(limited.url)).status);
    expect(statuses).toEqual([400, 400, 400, 429, 429]);
    const reads: Response[] = [];
    for (const id of ['none_best', 'bad!id', 'none_best', 'none_best', 'none_best', 'none_best'])
      reads.push(await fetch(`${limited.url}/jobs/${id}`));
    expect(reads.map((r) => r.status)).toEqual([404, 400, 404, 404, 404, 429]);
    expect(reads[0]!.headers.get('ratelimit')).toMatch(/^"reads"; r=4; t=\d+$/);
    expect(reads[1]!.headers.get('ratelimit')).toMatch(/^"reads"; r=3; t=\d+$/);
    expect(reads[5]!.headers.get('retry-after')).toMatch(/^\d+$/);
  });

  it('when /health and /ready are called often, then they are never limited', async () => {
    for (let i = 0; i < 12; i++) {
      expect((await fetch(`${limited.url}/health`)).status).toBe(200);
      expect((await fetch(`${limited.url}/ready`)).status).toBe(200);
    }
  });

  it('when a client spells the route /DOWNLOAD/ to dodge the limit, then it still counts as a submission', async () => {
    for (const path of ['/download', '/DOWNLOAD', '/download/'])
      expect((await submit(limited.url, {}, path)).status).toBeLessThan(300);
    expect((await submit(limited.url, {}, '/Download')).status).toBe(429);
  });

  it('when TRUST_PROXY is off, then a forged X-Forwarded-For does not buy a fresh budget', async () => {
    for (let i = 0; i < 3; i++) await submit(limited.url, { 'x-forwarded-for': `203.0.113.${i}` });
    expect((await submit(limited.url, { 'x-forwarded-for': '203.0.113.99' })).status).toBe(429);
  });

  it('when TRUST_PROXY names the load balancer, then each forwarded client has its own budget', async () => {
    for (let i = 0; i < 3; i++) await submit(behindProxy.url, { 'x-forwarded-for': '203.0.113.7' });
    expect((await submit(behindProxy.url, { 'x-forwarded-for': '203.0.113.7' })).status).toBe(429);
    expect((await submit(behindProxy.url, { 'x-forwarded-for': '203.0.113.8' })).status).toBeLessThan(300);
  });

  it('when clients send valid API keys, then each key has its own budget and invalid keys count against the address', async () => {
    for (let i = 0; i < 3; i++)
      expect((await submit(keyed.url, { authorization: `Bearer ${KEY_A}` })).status).toBeLessThan(300);
    expect((await submit(keyed.url, { authorization: `Bearer ${KEY_A}` })).status).toBe(429);
    expect((await submit(keyed.url, { 'x-api-key': KEY_B })).status).toBeLessThan(300);
    // Guessing keys: 401s until the address's budget is spent, then 429s.
    const guesses: number[] = [];
    for (let i = 0; i < 4; i++)
      guesses.push((await submit(keyed.url, { 'x-api-key': `guess-${i}-0123456789abcdef` })).status);
    expect(guesses).toEqual([401, 401, 401, 429]);
  });
});

describe('API keys', () => {
  it('when API_KEYS is set and a submission has no key or a wrong one, then it is a 401 with WWW-Authenticate', async () => {
    const attempts: Record<string, string>[] = [
      {},
      { authorization: 'Bearer wrong-key-0123456789' },
      { 'x-api-key': `${KEY_A}x` },
      { authorization: `Basic ${KEY_A}` },
    ];
    for (const headers of attempts) {
      // Failed attempts spend the address's budget (see above): each attempt gets a fresh one.
      const spent = await redis.keys('ratelimit:*');
      if (spent.length > 0) await redis.del(...spent);
      const res = await submit(keyed.url, headers);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="media-jobs"');
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('auth.unauthorized');
    }
  });

  it('when API_KEYS is set, then an upload without a key is refused before its body is stored', async () => {
    const form = new FormData();
    form.append('operations[]', 'normalize_volume');
    form.append('file', new Blob([new Uint8Array(1024)]), 'a.wav');
    const res = await fetch(`${keyed.url}/normalize`, { method: 'POST', body: form });
    expect(res.status).toBe(401);
    expect(await readdir(`${platform.dataDir}/tmp`)).toEqual([]);
  });

  it('when API_KEYS is set, then reads stay open and DELETE needs a key', async () => {
    const created = (await (await submit(keyed.url, { 'x-api-key': KEY_A })).json()) as { id: string };
    expect((await fetch(`${keyed.url}/jobs/${created.id}`)).status).toBe(200);
    expect((await fetch(`${keyed.url}/jobs/${created.id}`, { method: 'DELETE' })).status).toBe(401);
    expect((await fetch(`${keyed.url}/jobs/${created.id}`)).status).toBe(200);
    const deleted = await fetch(`${keyed.url}/jobs/${created.id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${KEY_B}` },
    });
    expect(deleted.status).toBe(200);
  });
});

describe('security headers and HTTP limits', () => {
  it('when any endpoint answers, then it carries an API content security policy and the helmet headers, and no X-Powered-By', async () => {
    for (const path of ['/health', '/jobs/none', '/no-such-route']) {
      const res = await fetch(`${limited.url}${path}`);
      expect(res.headers.get('content-security-policy')).toBe(
        "default-src 'none';frame-ancestors 'none';base-uri 'none';form-action 'none'",
      );
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('x-frame-options')).toBe('SAMEORIGIN');
      expect(res.headers.get('cross-origin-resource-policy')).toBe('same-origin');
      expect(res.headers.get('x-powered-by')).toBeNull();
    }
  });

  it('when a result file is requested, then it may be embedded cross-origin', async () => {
    const res = await fetch(`${limited.url}/jobs/none/file`);
    expect(res.status).toBe(404);
    expect(res.headers.get('cross-origin-resource-policy')).toBe('cross-origin');
  });

  it('when a route sets its own policy through the hook, then that policy replaces the API one', async () => {
    const app = express();
    app.use(securityHeaders());
    app.get(
      '/docs',
      contentSecurityPolicy(DOCS_CONTENT_SECURITY_POLICY),
      (_req, res) => void res.send('<html></html>'),
    );
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const { port } = server.address() as { port: number };
      const res = await fetch(`http://127.0.0.1:${port}/docs`);
      expect(res.headers.get('content-security-policy')).toBe(DOCS_CONTENT_SECURITY_POLICY);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('when the request headers exceed 16 KiB, then it is a 431 and the gateway keeps answering', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        `${limited.url}/health`,
        { headers: { 'x-big': 'a'.repeat(17 * 1024) } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject).end();
    });
    expect(status).toBe(431);
    expect((await fetch(`${limited.url}/health`)).status).toBe(200);
  });

  it('when a request body does not arrive within REQUEST_TIMEOUT_SECONDS, then it is a 408 and the gateway keeps answering', async () => {
    const slow = await startGateway(platform.config({ REQUEST_TIMEOUT_SECONDS: '1' }));
    try {
      const socket = connect(slow.port, '127.0.0.1');
      let answer = '';
      socket.on('data', (d: Buffer) => (answer += d.toString()));
      const closed = new Promise((r) => socket.once('close', r));
      // Headers and a part of the body, then nothing: a slow-body (slowloris) client.
      socket.write(
        'POST /download HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"url":',
      );
      const started = Date.now();
      await closed;
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
      expect(Date.now() - started).toBeLessThan(3000);
      expect((await fetch(`${slow.url}/health`)).status).toBe(200);
    } finally {
      await slow.stop();
    }
  });

  it('when HEAD asks for the event stream of a live job, then it answers at once instead of hanging', async () => {
    const created = (await (await submit(limited.url)).json()) as { id: string };
    const res = await fetch(`${limited.url}/jobs/${created.id}/events`, {
      method: 'HEAD',
      signal: AbortSignal.timeout(3000),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  });

  it('when POST /normalize gets a multipart body with no boundary or no end, then it is a 400, never a 500', async () => {
    for (const [type, body] of [
      ['multipart/form-data', 'x'],
      [
        'multipart/form-data; boundary=zz',
        '--zz\r\nContent-Disposition: form-data; name="operations[]"\r\n\r\nx',
      ],
      ['multipart/form-data; boundary=zz', '--zz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--zz--\r\n'],
    ]) {
      const res = await fetch(`${limited.url}/normalize`, {
        method: 'POST',
        headers: { 'content-type': type as string },
        body,
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
        'request.invalid_multipart',
      );
    }
  });
});

describe('abuse configuration', () => {
  it('when the new variables are unset, then limits are on with safe defaults and keys and proxies are off', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      rateLimitPerMinute: 60,
      rateLimitReadsPerMinute: 600,
      trustProxy: false,
      apiKeys: [],
      requestTimeoutMs: 900_000,
    });
  });

  it.each([
    ['RATE_LIMIT_PER_MINUTE', '-1'],
    ['RATE_LIMIT_READS_PER_MINUTE', 'lots'],
    ['TRUST_PROXY', 'true'],
    ['TRUST_PROXY', '11'],
    ['TRUST_PROXY', 'my-balancer'],
    ['REQUEST_TIMEOUT_SECONDS', '0'],
  ])('when %s=%s, then loading fails with a one-line error naming the variable', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`^Invalid configuration: ${name}=`));
  });

  it('when an API key is too short, then loading fails and the keys are not printed', () => {
    let message = '';
    try {
      loadConfig({ API_KEYS: 'short-secret,another-long-enough-key' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^Invalid configuration: API_KEYS="<redacted>" must be/);
    expect(message).not.toContain('short-secret');
  });

  it('when TRUST_PROXY lists addresses and names, then they are kept as a list', () => {
    expect(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8' }).trustProxy).toEqual([
      'loopback',
      '10.0.0.0/8',
    ]);
    expect(loadConfig({ TRUST_PROXY: '2' }).trustProxy).toBe(2);
  });
});
