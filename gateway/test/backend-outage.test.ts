import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, managed, startPlatform, type Platform, type TestServer } from '@media-jobs/libs/testing';
import { startGateway, type Gateway } from '../src/gateway.js';

/**
 * The gateway's error handler tells outages by error class, reply code and connection state
 * (`backendOutage`): each case here is a real server in a real state, answered 503 with
 * `Retry-After`, never 500.
 */

let platform: Platform;
let replica: TestServer;
let gateway: Gateway;
let onReplica: Gateway;

beforeAll(async () => {
  platform = await startPlatform();
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'mj-replica-'));
  replica = managed('redis', port, dir, 'redis-server', [
    ...['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir],
    ...['--replicaof', '127.0.0.1', String(platform.redis.port)],
  ]);
  await replica.start();
  gateway = await startGateway(platform.config());
  onReplica = await startGateway(platform.config({ REDIS_URL: replica.url }));
});

afterAll(async () => {
  await onReplica?.stop();
  await gateway?.stop();
  await replica?.close();
  await platform?.close();
});

async function call(base: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const json = (await res.json()) as { error?: { code: string; message: string } };
  return { status: res.status, retryAfter: res.headers.get('retry-after'), error: json.error };
}

describe('backend outages at the gateway', () => {
  it('when the gateway’s Redis is a read-only replica, then a submission answers 503 with Retry-After, not 500', async () => {
    const res = await call(onReplica.url, 'POST', '/download', {
      url: 'http://127.0.0.1:9/readonly.mp4',
      quality: 'best',
    });
    expect(res).toMatchObject({ status: 503, retryAfter: expect.stringMatching(/^\d+$/) });
    expect(res.error).toEqual({
      code: 'backend.unavailable',
      message: 'Redis is not reachable; try again shortly',
    });
  });

  it('when Redis stops, then lookups, lists and deletions answer 503 at once, and work again once it is back', async () => {
    await platform.redis.stop();
    try {
      for (const [method, path] of [
        ['GET', '/jobs/abc_best'],
        ['GET', '/jobs'],
        ['DELETE', '/jobs/abc_best'],
      ] as const) {
        const res = await call(gateway.url, method, path);
        expect(res, `${method} ${path}`).toMatchObject({
          status: 503,
          retryAfter: expect.stringMatching(/^\d+$/),
          error: { code: 'backend.unavailable' },
        });
      }
    } finally {
      await platform.redis.start();
    }
    await expect.poll(async () => (await call(gateway.url, 'GET', '/jobs/abc_best')).status).toBe(404);
  });
});
