import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from './config.js';
import type { Logger } from './logger.js';

export type { Redis } from 'ioredis';

/** Clients being closed on purpose: their last 'close' is no outage. */
const closing = new WeakSet<Redis>();

/**
 * One Redis client per service. Commands sent before the first connect wait for it (a
 * service may start a moment before Redis); after that, commands fail at once while Redis
 * is away (the offline queue is switched off) so the gateway answers 503 instead of
 * hanging. The client keeps reconnecting by itself.
 */
export function createRedis(
  config: Pick<Config, 'redisUrl'> & Partial<Pick<Config, 'redisSentinels' | 'redisSentinelName'>>,
  logger?: Logger,
  name = 'media-jobs',
): Redis {
  const common = {
    connectionName: name,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    connectTimeout: 5000,
    retryStrategy: (times: number) => Math.min(times * 200, 2000),
    lazyConnect: false,
  };
  const sentinels = config.redisSentinels ?? [];
  const redis =
    sentinels.length === 0
      ? new Redis(config.redisUrl, common)
      : new Redis({ ...common, ...sentinelOptions(config.redisUrl, sentinels, config.redisSentinelName) });
  let wasReady = false;
  let lost = false;
  redis.on('ready', () => {
    if (wasReady) logger?.info('Redis reconnected');
    wasReady = true;
    lost = false;
    redis.options.enableOfflineQueue = false;
  });
  redis.on('error', (err: Error) => logger?.debug({ err: err.message }, 'Redis error'));
  // 'close' repeats on every failed reconnect attempt: say it once per outage.
  redis.on('close', () => {
    if (wasReady && !lost && !closing.has(redis)) logger?.warn('Redis connection lost; reconnecting');
    lost = true;
  });
  redis.on('end', () => logger?.debug('Redis connection ended'));
  return redis;
}

/**
 * The master is asked of the Sentinels (the first that answers) and followed on failover: a
 * failover closes the clients of the old master (Redis does so when its role changes, and a
 * dead master's sockets close), the client then asks the Sentinels again, and a write that
 * still reaches a demoted master (READONLY) reconnects and is sent again to the new one. The
 * password, database and TLS come from `REDIS_URL`.
 *
 * ioredis' `failoverDetector` stays off (its default): the detector of the lost connection
 * stays subscribed to `+switch-master`, and when the message comes while the client is
 * asking the Sentinels for the master (it usually is, after a master died), it stops that
 * connect, which ends the client for good: every command after the failover fails with
 * "Connection is closed." (seen in `libs/test/cluster.test.ts`, 1 run in 3; ioredis issue #1683).
 */
function sentinelOptions(
  redisUrl: string,
  sentinels: readonly { host: string; port: number }[],
  masterName = 'mymaster',
): RedisOptions {
  const url = new URL(redisUrl);
  const db = Number(url.pathname.replace(/^\//, '') || 0);
  return {
    sentinels: sentinels.map((s) => ({ host: s.host, port: s.port })),
    name: masterName,
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.protocol === 'rediss:' ? { tls: {}, enableTLSForSentinelMode: true } : {}),
    db: Number.isInteger(db) ? db : 0,
    sentinelRetryStrategy: (times: number) => Math.min(times * 200, 2000),
    reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 2 : false),
  };
}

/** Resolves once the client is ready, or rejects after `timeoutMs`. */
export async function waitForRedis(redis: Redis, timeoutMs = 10_000): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`Redis not ready after ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      redis.off('ready', onReady);
    };
    redis.on('ready', onReady);
  });
}

/** Quits politely, then disconnects if Redis does not answer; safe to call twice. */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'end') return;
  closing.add(redis);
  try {
    await Promise.race([redis.quit(), new Promise((r) => setTimeout(r, 1000))]);
  } catch {
    // Already closing or unreachable: disconnect below.
  }
  redis.disconnect();
}
