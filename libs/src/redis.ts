import { Redis } from 'ioredis';
import type { Config } from './config.js';
import type { Logger } from './logger.js';

export type { Redis } from 'ioredis';

/**
 * One Redis client per service. Commands fail fast while Redis is away (no offline queue
 * beyond the first connect) so the gateway can answer 503 instead of hanging; the client
 * keeps reconnecting by itself.
 */
export function createRedis(config: Pick<Config, 'redisUrl'>, logger?: Logger, name = 'media-jobs'): Redis {
  const redis = new Redis(config.redisUrl, {
    connectionName: name,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    connectTimeout: 5000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
    lazyConnect: false,
  });
  let wasReady = false;
  redis.on('ready', () => {
    if (wasReady) logger?.info('Redis reconnected');
    wasReady = true;
  });
  redis.on('error', (err: Error) => logger?.debug({ err: err.message }, 'Redis error'));
  redis.on('end', () => logger?.debug('Redis connection ended'));
  return redis;
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
  try {
    await Promise.race([redis.quit(), new Promise((r) => setTimeout(r, 1000))]);
  } catch {
    // Already closing or unreachable: disconnect below.
  }
  redis.disconnect();
}
