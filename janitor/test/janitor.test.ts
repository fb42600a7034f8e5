import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import {
  EVENTS_STREAM,
  EXPIRY_INDEX,
  JANITOR_SUBJECTS,
  JobStore,
  connectNats,
  createRedis,
  closeContext,
  listServiceConfigs,
  loadConfig,
  openContext,
  recordServiceConfig,
  startConfigAnnouncer,
  serviceConfigSubject,
  envelope,
  type NatsConnection,
  type Redis,
} from '@media-jobs/libs';
import { spawnService, startPlatform, waitUntil, type Platform } from '@media-jobs/libs/testing';
import { startJanitor } from '../src/janitor.js';
import { HOUR, captureLogger, writeData } from './helpers.js';

let platform: Platform;
let nc: NatsConnection;
let redis: Redis;

beforeAll(async () => {
  platform = await startPlatform();
  nc = await connectNats(platform.config(), 'janitor-test');
  redis = createRedis(platform.config());
});
afterAll(async () => {
  await nc?.close();
  redis?.disconnect();
  await platform?.close();
});

describe('janitor service', () => {
  it('when the janitor process starts, then it logs its TTL and first sweep and answers janitor.cleanup', async () => {
    const proc = spawnService(
      'janitor',
      platform.env({ LOG_LEVEL: 'info', CACHE_TTL_HOURS: '2', CLEANUP_INTERVAL_MINUTES: '15' }),
    );
    try {
      await proc.waitFor(/Cache TTL: 2h, Cleanup: 15min/);
      await proc.waitFor(
        /Cleanup: removed 0 jobs \(0 download, 0 normalize\), freed 0 B in \d+ ms; next in 15min/,
      );
      await proc.waitFor(/Janitor started/);
      const reply = await nc.request(JANITOR_SUBJECTS.cleanupRequest, '{}', { timeout: 10_000 });
      expect(reply.json()).toMatchObject({
        ok: true,
        summary: { trigger: 'admin', skipped: false, removed: { download: 0 } },
      });
      expect(await proc.stop()).toBe(0);
    } finally {
      await proc.stop();
    }
  });

  it('when CACHE_TTL_HOURS is short, then Redis expires the record first and the next interval sweep still removes the file', async () => {
    const env = platform.env({
      LOG_LEVEL: 'info',
      CACHE_TTL_HOURS: '0.0005',
      CLEANUP_INTERVAL_MINUTES: '0.02',
    });
    const config = loadConfig(env);
    const proc = spawnService('janitor', env);
    try {
      await proc.waitFor(/Janitor started/);
      const store = new JobStore({ redis, ttlMs: config.cacheTtlMs });
      await store.claim('download', 'short_best', {});
      const file = await writeData(join(config.dataDir, 'downloads', 'short_best.mp4'), 321);
      await waitUntil(
        'Redis to expire job:short_best',
        async () => (await redis.exists('job:short_best')) === 0,
      );
      expect(existsSync(file)).toBe(true);
      await proc.waitFor(
        /Cleanup: removed 1 job \(1 download, 0 normalize\), freed 321 B in \d+ ms; next in 1\.2s/,
        10_000,
      );
      expect(existsSync(file)).toBe(false);
      expect(await redis.zscore(EXPIRY_INDEX, 'job:short_best')).toBeNull();
      expect(await proc.stop()).toBe(0);
    } finally {
      await proc.stop();
    }
  });

  it('when another service announces a different TTL or interval, then the janitor warns once and lists itself in the services registry', async () => {
    const log = captureLogger('info');
    const janitor = await startJanitor(
      platform.config({ CACHE_TTL_HOURS: '24', CLEANUP_INTERVAL_MINUTES: '30' }),
      log.logger,
    );
    try {
      const announce = (instance: string, ttl: number) =>
        nc.publish(
          serviceConfigSubject('gateway'),
          JSON.stringify(
            envelope({
              type: 'config',
              service: 'gateway',
              instance,
              config: { CACHE_TTL_HOURS: ttl, CLEANUP_INTERVAL_MINUTES: 30 },
            }),
          ),
        );
      announce('gw-1', 24);
      announce('gw-1', 1);
      announce('gw-1', 1);
      // The janitor handles announcements one by one, in order: once the last one's warning is
      // out, a second warning for gw-1 would be out too.
      announce('gw-last', 2);
      const warnings = (instance: string) =>
        // Only this instance's: earlier tests' janitors are still in the registry, each with its own values.
        log
          .lines()
          .filter(
            (l) => l.level === 'warn' && l.msg.startsWith(`Config disagreement: gateway (${instance})`),
          );
      await waitUntil('the warning about the last announcement', () => warnings('gw-last').length > 0);
      expect(warnings('gw-1').map((l) => l.msg)).toEqual([
        'Config disagreement: gateway (gw-1) runs with CACHE_TTL_HOURS=1, this janitor with 24',
      ]);
      await waitUntil('the janitor in the services registry', async () =>
        (await listServiceConfigs(redis)).some((s) => s.instance === janitor.instance),
      );
    } finally {
      await janitor.stop();
    }
  });

  it('when a service with another interval already runs as the janitor starts, then it warns at once from the registry', async () => {
    await recordServiceConfig(
      redis,
      envelope({
        type: 'config',
        service: 'download-worker',
        instance: 'dw-early',
        config: { CACHE_TTL_HOURS: 24, CLEANUP_INTERVAL_MINUTES: 5 },
      }),
    );
    const log = captureLogger('info');
    const janitor = await startJanitor(
      platform.config({ CACHE_TTL_HOURS: '24', CLEANUP_INTERVAL_MINUTES: '30' }),
      log.logger,
    );
    try {
      await waitUntil('the warning about dw-early', () =>
        log.lines().some((l) => l.msg.includes('(dw-early)')),
      );
      expect(log.lines().filter((l) => l.level === 'warn' && l.msg.includes('(dw-early)'))).toHaveLength(1);
      expect(log.lines().find((l) => l.msg.includes('(dw-early)'))?.msg).toBe(
        'Config disagreement: download-worker (dw-early) runs with CLEANUP_INTERVAL_MINUTES=5, this janitor with 30',
      );
    } finally {
      await janitor.stop();
    }
  });

  it('when a service runs, then it announces its config again every interval, on NATS and in the registry', async () => {
    const ctx = await openContext('probe', platform.config(), captureLogger('info').logger);
    const seen: unknown[] = [];
    const sub = nc.subscribe(serviceConfigSubject('probe'), {
      callback: (_e, m) => void seen.push(m.json()),
    });
    await nc.flush();
    const stop = startConfigAnnouncer(ctx, 150);
    try {
      await waitUntil('3 config announcements', () => seen.length >= 3);
      expect(seen[0]).toMatchObject({ type: 'config', service: 'probe', config: { CACHE_TTL_HOURS: 24 } });
      await waitUntil('the probe in the services registry', async () =>
        (await listServiceConfigs(redis)).some((s) => s.service === 'probe'),
      );
    } finally {
      stop();
      sub.unsubscribe();
      await closeContext(ctx);
    }
  });

  it('when the janitor restarts with a new TTL, then the EVENTS stream max_age follows it', async () => {
    const jsm = await jetstreamManager(nc);
    const maxAgeHours = async () => (await jsm.streams.info(EVENTS_STREAM)).config.max_age / 1e6 / HOUR;
    const first = await startJanitor(
      platform.config({ CACHE_TTL_HOURS: '3' }),
      captureLogger('silent').logger,
    );
    await first.stop();
    expect(await maxAgeHours()).toBe(3);
    const second = await startJanitor(
      platform.config({ CACHE_TTL_HOURS: '0.5' }),
      captureLogger('silent').logger,
    );
    await second.stop();
    expect(await maxAgeHours()).toBe(0.5);
    // Under the default 2-minute duplicate window: the stream must accept this too.
    const third = await startJanitor(
      platform.config({ CACHE_TTL_HOURS: '0.0005' }),
      captureLogger('silent').logger,
    );
    await third.stop();
    expect((await jsm.streams.info(EVENTS_STREAM)).config.max_age).toBe(1800 * 1e6);
  });
});
