import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  loadConfig,
  postWebhook,
  shownUrl,
  signWebhook,
  webhookBackoffMs,
  webhookHeaders,
  webhookId,
  webhookKey,
  type WebhookDelivery,
} from '@media-jobs/libs';

// The test vector of the Standard Webhooks reference library (libraries/javascript, "sign function works").
const VECTOR = {
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  timestamp: 1614265330,
  payload: '{"test": 2432232314}',
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
};

describe('Standard Webhooks signature', () => {
  it('when the spec test vector is signed, then the signature is the reference one', () => {
    expect(signWebhook(webhookKey(VECTOR.secret), VECTOR.id, VECTOR.timestamp, VECTOR.payload)).toBe(
      VECTOR.signature,
    );
    // The reference libraries take the secret with or without its prefix.
    expect(signWebhook(webhookKey(VECTOR.secret.slice(6)), VECTOR.id, VECTOR.timestamp, VECTOR.payload)).toBe(
      VECTOR.signature,
    );
  });

  it('when headers are built, then they carry the id, the whole-second timestamp and the signature of that timestamp', () => {
    const headers = webhookHeaders(
      webhookKey(VECTOR.secret),
      VECTOR.id,
      VECTOR.payload,
      new Date(VECTOR.timestamp * 1000 + 999),
    );
    expect(headers).toEqual({
      'webhook-id': VECTOR.id,
      'webhook-timestamp': String(VECTOR.timestamp),
      'webhook-signature': VECTOR.signature,
    });
    expect(webhookHeaders(null, VECTOR.id, VECTOR.payload)).not.toHaveProperty('webhook-signature');
  });

  it('when WEBHOOK_SECRET is not whsec_ + base64 of 24-64 bytes, then the config is refused without showing it', () => {
    expect(loadConfig({ WEBHOOK_SECRET: VECTOR.secret }).webhookSecret).toBe(VECTOR.secret);
    for (const bad of ['whsec_short', 'whsec_not base64!!', `whsec_${Buffer.alloc(65).toString('base64')}`]) {
      const attempt = () => loadConfig({ WEBHOOK_SECRET: bad });
      expect(attempt).toThrow(ConfigError);
      expect(attempt).toThrow(/WEBHOOK_SECRET="<redacted>" must be whsec_/);
    }
    expect(() => loadConfig({ WEBHOOK_URLS: 'https://a.example/h, ftp://b' })).toThrow(/WEBHOOK_URLS/);
    expect(loadConfig({ WEBHOOK_URLS: 'https://a.example/h, http://b.example' }).webhookUrls).toEqual([
      'https://a.example/h',
      'http://b.example',
    ]);
  });
});

describe('webhook retry schedule and ids', () => {
  it('when attempts fail, then the delay doubles from the base up to one hour, with at most 10 % jitter', () => {
    const none = () => 0;
    expect([1, 2, 3, 4].map((n) => webhookBackoffMs(n, 5000, none))).toEqual([5000, 10_000, 20_000, 40_000]);
    expect(webhookBackoffMs(30, 5000, none)).toBe(3_600_000);
    expect(webhookBackoffMs(1, 5000, () => 0.999)).toBeLessThanOrEqual(5500);
    // The default schedule (5 s base, 30 attempts) spans about 20 hours.
    let total = 0;
    for (let n = 1; n < 30; n++) total += webhookBackoffMs(n, 5000, none);
    expect(total / 3_600_000).toBeGreaterThan(19);
    expect(total / 3_600_000).toBeLessThan(22);
  });

  it('when ids are derived, then one event of one generation has one id and the shown URL has no credentials', () => {
    expect(webhookId('download', 'a_best', 'g1', 'completed')).toBe(
      webhookId('download', 'a_best', 'g1', 'completed'),
    );
    expect(webhookId('download', 'a_best', 'g2', 'completed')).not.toBe(
      webhookId('download', 'a_best', 'g1', 'completed'),
    );
    expect(webhookId('download', 'a_best', 'g1', 'completed')).toMatch(/^msg_[0-9a-f]{32}$/);
    expect(shownUrl('https://user:pw@hooks.example/x?y=1')).toBe('https://hooks.example/x?y=1');
  });
});

describe('send-time address checks', () => {
  let server: Server;
  let port: number;
  let hits = 0;

  beforeAll(async () => {
    server = createServer((_req, res) => {
      hits += 1;
      res.writeHead(204).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const delivery = (url: string): WebhookDelivery => ({
    v: 1,
    webhook_id: 'msg_x',
    url,
    source: 'callback',
    kind: 'download',
    job_id: 'a_best',
    created_at: null,
    event: 'completed',
    body: '{}',
  });

  it('when a name resolves to a loopback address at send time (DNS rebinding), then the attempt is refused and nothing is sent', async () => {
    const before = hits;
    const rebinding = async () => ['93.184.216.34', '127.0.0.1'];
    const result = await postWebhook(delivery(`http://rebind.example:${port}/hook`), {
      key: null,
      timeoutMs: 2000,
      checkAddress: true,
      resolve: rebinding,
    });
    expect(result.status).toBeNull();
    expect(result.error).toMatch(/refused: rebind\.example resolves to 127\.0\.0\.1/);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]) {
      const literal = await postWebhook(delivery(`http://${host}/hook`), {
        key: null,
        timeoutMs: 2000,
        checkAddress: true,
      });
      expect(literal.error, host).toMatch(/^refused: /);
    }
    expect(hits).toBe(before);
  });

  it('when the check is off (ALLOW_PRIVATE_URLS or an operator URL), then the same target is reached', async () => {
    const result = await postWebhook(delivery(`http://127.0.0.1:${port}/hook`), {
      key: null,
      timeoutMs: 2000,
      checkAddress: false,
    });
    expect(result).toEqual({ status: 204 });
    // A resolver answering only public addresses lets the name through to the address it gave.
    const viaName = await postWebhook(delivery(`http://public.example:${port}/hook`), {
      key: null,
      timeoutMs: 2000,
      checkAddress: true,
      resolve: async () => ['203.0.113.10'],
    });
    expect(viaName.status).toBeNull(); // 203.0.113.10 (TEST-NET-3) is not reachable: the connection went there, not to 127.0.0.1
  });
});
