import { mkdir, writeFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobStore, createRedis, type Redis } from '@media-jobs/libs';
import { startPlatform, waitUntil, type Platform } from '@media-jobs/libs/testing';
import { startGateway, type Gateway } from '../src/gateway.js';
import { adminAccessError } from '../src/routes/admin.js';
import { startJanitor } from '../../janitor/src/janitor.js';

let platform: Platform;
let open: Gateway;
let guarded: Gateway;
let redis: Redis;

beforeAll(async () => {
  platform = await startPlatform();
  open = await startGateway(platform.config({ HOST: '0.0.0.0' }));
  guarded = await startGateway(platform.config({ ADMIN_TOKEN: 's3cret-token' }));
  redis = createRedis(platform.config());
});
afterAll(async () => {
  await open?.stop();
  await guarded?.stop();
  redis?.disconnect();
  await platform?.close();
});

async function call(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; body: Record<string, any> }> {
  const res = await fetch(url, init);
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

/** An address of this machine that is not loopback, to call the gateway as a remote client would. */
function externalAddress(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
}

describe('admin endpoints', () => {
  it('when ADMIN_TOKEN is set, then /admin answers 401 without or with a wrong Bearer token and 200 with the right one', async () => {
    const stats = `${guarded.url}/admin/stats`;
    const none = await call(stats);
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe('admin.unauthorized');
    expect((await call(stats, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    expect(
      (
        await call(`${guarded.url}/admin/cleanup`, {
          method: 'POST',
          headers: { authorization: 'Bearer s3cret-tokenX' },
        })
      ).status,
    ).toBe(401);
    expect((await call(stats, { headers: { authorization: 'Bearer s3cret-token' } })).status).toBe(200);
  });

  it('when ADMIN_TOKEN is unset, then loopback clients are answered and any other client gets 403', async () => {
    expect((await call(`${open.url}/admin/stats`)).status).toBe(200);
    expect(adminAccessError({ adminToken: '' }, '::ffff:127.0.0.1', undefined)).toBeNull();
    expect(adminAccessError({ adminToken: '' }, '::1', undefined)).toBeNull();
    expect(adminAccessError({ adminToken: '' }, '10.1.2.3', 'Bearer anything')?.status).toBe(403);
    const address = externalAddress();
    if (address) {
      const remote = await call(`http://${address}:${open.port}/admin/stats`);
      expect(remote.status).toBe(403);
      expect(remote.body.error.code).toBe('admin.forbidden');
    }
  });

  it('when no janitor runs, then POST /admin/cleanup answers 503', async () => {
    const res = await call(`${open.url}/admin/cleanup`, { method: 'POST' });
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('janitor.unavailable');
  });

  it('when a janitor runs, then cleanup sweeps over NATS and stats show jobs, cache, disk, the last sweep and every service with disagreements', async () => {
    const config = platform.config();
    const janitor = await startJanitor(platform.config({ CLEANUP_INTERVAL_MINUTES: '10' }));
    try {
      const store = new JobStore({ redis, ttlMs: config.cacheTtlMs });
      const done = await store.claim('download', 'done_best', {});
      await store.update(done.job, { status: 'completed', progress: 100 });
      await store.claim('download', 'done_best', {});
      await store.claim('normalize', `${'a'.repeat(16)}_mono`, {});
      await mkdir(config.dataDir + '/downloads', { recursive: true });
      await writeFile(join(config.dataDir, 'downloads', 'done_best.mp4'), Buffer.alloc(2000));
      await new JobStore({ redis, ttlMs: 20 }).claim('download', 'old_best', {});
      await writeFile(join(config.dataDir, 'downloads', 'old_best.mp4'), Buffer.alloc(500));
      await waitUntil('Redis to expire job:old_best', async () => (await redis.exists('job:old_best')) === 0);

      const cleanup = await call(`${open.url}/admin/cleanup`, { method: 'POST' });
      expect(cleanup.status).toBe(200);
      expect(cleanup.body).toMatchObject({
        trigger: 'admin',
        skipped: false,
        removed: { download: 1, normalize: 0 },
        bytes_freed: 500,
      });

      const { status, body } = await call(`${open.url}/admin/stats`);
      expect(status).toBe(200);
      expect(body.jobs).toMatchObject({
        by_kind: { download: { completed: 1, queued: 0, total: 1 }, normalize: { queued: 1, total: 1 } },
        awaiting_sweep: 0,
        complete: true,
      });
      expect(body.cache).toMatchObject({
        download: { hits: 1, misses: 2 },
        normalize: { hits: 0, misses: 1 },
      });
      expect(body.disk.downloads).toEqual({ files: 1, bytes: 2000 });
      expect(body.last_sweep).toEqual(cleanup.body);
      const services = (body.services as { service: string; config: Record<string, unknown> }[])
        .map((s) => s.service)
        .sort();
      // Both gateways run in this process, so they share one instance name and one entry.
      expect(services).toEqual(['gateway', 'janitor']);
      expect(body.disagreements).toHaveLength(1);
      expect(body.disagreements[0].variable).toBe('CLEANUP_INTERVAL_MINUTES');
      expect(Object.values(body.disagreements[0].values).sort()).toEqual([10, 30]);
    } finally {
      await janitor.stop();
    }
  });
});
