import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Config } from './config.js';
import { effectiveConfig } from './config.js';
import { errorMessage } from './errors.js';
import { envelope } from './events.js';
import { EventPublisher } from './events-publisher.js';
import { JobStore } from './job-store.js';
import type { Logger } from './logger.js';
import { connectNats, ensureJetStream, retryJetStreamSetup } from './nats.js';
import { closeRedis, createRedis, waitForRedis, type Redis } from './redis.js';
import { recordServiceConfig } from './service-registry.js';
import { LocalFileStore, NatsFileStore, type FileStore } from './file-store.js';
import { createStorage, ensureStorage, type Storage } from './storage.js';
import { serviceConfigSubject } from './subjects.js';

/** What every service holds: its connections and the shared parts built on them. */
export interface ServiceContext {
  readonly service: string;
  readonly instance: string;
  readonly config: Config;
  readonly logger: Logger;
  readonly nc: NatsConnection;
  readonly redis: Redis;
  readonly store: JobStore;
  /** Local folders; with `STORAGE=nats` only `tmp` is used. */
  readonly storage: Storage;
  /** Where finished files live (`STORAGE`): every result and upload read, write and delete goes here. */
  readonly files: FileStore;
  readonly events: EventPublisher;
}

/** Connects to NATS and Redis, sets up streams, consumers and folders. */
export async function openContext(service: string, config: Config, logger: Logger): Promise<ServiceContext> {
  const storage = createStorage(config.dataDir);
  // With STORAGE=nats the folder is this service's own scratch space: tmp/ alone.
  if (config.storage === 'local') await ensureStorage(storage);
  else await claimTmp(storage, logger);
  const redis = createRedis(config, logger, service);
  try {
    await waitForRedis(redis, 15_000);
    const nc = await connectNats(config, service, logger);
    const files: FileStore =
      config.storage === 'nats'
        ? new NatsFileStore(nc, config.natsReplicas)
        : new LocalFileStore(config.dataDir);
    await retryJetStreamSetup(
      'the JOBS and EVENTS streams and the file buckets',
      async () => {
        await ensureJetStream(nc, config);
        await files.ensure();
      },
      logger,
    );
    return {
      service,
      instance: `${hostname()}:${process.pid}`,
      config,
      logger,
      nc,
      redis,
      // With Sentinel, a new job's record is on a replica before it is accepted: replication
      // is asynchronous, and a failover would otherwise lose jobs answered 202 a moment before.
      store: new JobStore({
        redis,
        ttlMs: config.cacheTtlMs,
        createReplicas: config.redisSentinels.length > 0 ? 1 : 0,
      }),
      storage,
      files,
      events: new EventPublisher(nc),
    };
  } catch (err) {
    await closeRedis(redis);
    throw err;
  }
}

/**
 * With STORAGE=nats, `tmp/` is this process's own (each service has its own DATA_DIR), so
 * what an earlier process left there when it was killed goes now: no janitor sees this
 * folder. A folder that another live process on this host claims (a DATA_DIR shared against
 * the rule, as `npm start` does) is left alone.
 */
async function claimTmp(storage: Storage, logger: Logger): Promise<void> {
  await mkdir(storage.tmp, { recursive: true });
  const ownerFile = join(storage.root, '.tmp-owner');
  const me = `${hostname()}:${process.pid}`;
  const [host, pidText] = (await readFile(ownerFile, 'utf8').catch(() => '')).split(':');
  const pid = Number(pidText);
  if (host === hostname() && pid > 0 && pid !== process.pid && isAlive(pid)) {
    logger.warn(
      { dataDir: storage.root, pid },
      'DATA_DIR is shared with another process; its tmp/ is left as it is',
    );
    return;
  }
  await writeFile(ownerFile, me);
  for (const name of await readdir(storage.tmp)) {
    await rm(join(storage.tmp, name), { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Drains NATS and quits Redis; safe to call twice. */
export async function closeContext(ctx: ServiceContext): Promise<void> {
  await ctx.files.close();
  if (!ctx.nc.isClosed()) {
    await ctx.nc.drain().catch(() => ctx.nc.close());
  }
  await closeRedis(ctx.redis);
}

/**
 * Publishes this process's effective configuration on `events.service.<name>.config` and
 * records it in Redis (`services:config`), so `/admin/stats` lists it even when no janitor
 * runs. The Redis write is best effort: a missed one is repeated by the next announcement.
 */
export function announceConfig(ctx: ServiceContext): void {
  const body = {
    type: 'config' as const,
    service: ctx.service,
    instance: ctx.instance,
    config: effectiveConfig(ctx.config),
  };
  ctx.events.publish(serviceConfigSubject(ctx.service), body);
  recordServiceConfig(ctx.redis, envelope(body)).catch((err: unknown) =>
    ctx.logger.debug({ err: errorMessage(err) }, 'Cannot record the config announcement'),
  );
}

/** Announces now and every `intervalMs` (default one minute); returns the stop function. */
export function startConfigAnnouncer(ctx: ServiceContext, intervalMs = 60_000): () => void {
  announceConfig(ctx);
  const timer = setInterval(() => announceConfig(ctx), intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** What a service's `start…()` gives back. */
export interface RunningService {
  stop(): Promise<void>;
}

/**
 * The body of every service's `main.ts`. The stop routine is tied to the signals before the
 * service starts, so a SIGTERM that comes while it starts (waiting for Redis, say) ends it
 * cleanly once it is up rather than killing it half-way; a start that fails exits 1 with
 * one fatal line.
 */
export async function runService(
  name: string,
  logger: Logger,
  graceMs: number,
  start: () => Promise<RunningService>,
): Promise<void> {
  // Both in the same tick: no signal can come between the start and the handler.
  const starting = start();
  handleShutdown(
    logger,
    async () => {
      const service = await starting.catch(() => undefined);
      await service?.stop();
    },
    graceMs,
  );
  try {
    await starting;
  } catch (err) {
    logger.fatal({ err }, `${name} failed to start`);
    process.exit(1);
  }
}

/**
 * Ties one stop routine to every way the process can end: SIGINT, SIGTERM, an uncaught
 * error. The routine runs once; the process exits 0 after a clean stop, 1 otherwise, and
 * is killed outright if the stop outlasts the grace period.
 */
export function handleShutdown(logger: Logger, stop: () => Promise<void>, graceMs: number): void {
  let stopping = false;
  const shutdown = (reason: string, code: number) => {
    if (stopping) return;
    stopping = true;
    logger.info({ reason }, 'Shutting down');
    const timer = setTimeout(() => {
      logger.error({ graceMs }, 'Shutdown took longer than the grace period; exiting');
      process.exit(1);
    }, graceMs + 2000);
    timer.unref();
    stop().then(
      () => {
        logger.info('Stopped');
        process.exit(code);
      },
      (err: unknown) => {
        logger.error({ err }, 'Error while stopping');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM', 0));
  process.once('SIGINT', () => shutdown('SIGINT', 0));
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'Uncaught exception');
    shutdown('uncaughtException', 1);
  });
  process.on('unhandledRejection', (err) => {
    logger.fatal({ err }, 'Unhandled rejection');
    shutdown('unhandledRejection', 1);
  });
}
