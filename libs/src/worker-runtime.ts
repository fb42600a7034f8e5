import type { Config } from './config.js';
import type { AppError } from './errors.js';
import type { JobKind } from './job-record.js';
import { JobRunner, type JobHandler } from './job-runner.js';
import { createLogger, type Logger } from './logger.js';
import { closeContext, openContext, startConfigAnnouncer, type ServiceContext } from './service.js';

export interface WorkerOptions {
  /** The service name in logs, events and the config registry (`download-worker`). */
  service: string;
  kind: JobKind;
  config: Config;
  logger?: Logger;
  /** Builds the job handler once the connections are open. */
  handler: (ctx: ServiceContext) => JobHandler;
  /** Jobs in flight at most. */
  concurrency: number;
  /** Whole-run limit of one job. */
  timeoutMs: number;
  /** The error a run over `timeoutMs` fails with (default `<kind>.timeout`). */
  timeoutError?: (timeoutMs: number) => AppError;
  /** Minimum time between progress writes (default 250 ms). */
  progressIntervalMs?: number;
  /**
   * Work that runs beside the worker once it takes jobs (say, logging a tool's version); it
   * is awaited before the connections close.
   */
  onReady?: (ctx: ServiceContext) => Promise<void> | void;
}

export interface Worker {
  readonly ctx: ServiceContext;
  /** Jobs running now. */
  readonly active: number;
  /** Stops taking jobs, lets running ones finish (or hands them back after the grace period), then disconnects. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Everything a worker service is but its handler: the connections, the JetStream consumer
 * and the job lifecycle (`JobRunner`), the periodic config announcement, and a stop that
 * hands unfinished jobs back. A worker's `main.ts` is this plus its handler.
 */
export async function startWorker(options: WorkerOptions): Promise<Worker> {
  const { service, kind, config, concurrency } = options;
  const logger = options.logger ?? createLogger(service, config);
  const ctx = await openContext(service, config, logger);
  const runner = new JobRunner(ctx, {
    kind,
    handler: options.handler(ctx),
    concurrency,
    timeoutMs: options.timeoutMs,
    ...(options.progressIntervalMs === undefined ? {} : { progressIntervalMs: options.progressIntervalMs }),
    ...(options.timeoutError ? { timeoutError: options.timeoutError } : {}),
  });
  try {
    await runner.start();
  } catch (err) {
    await closeContext(ctx);
    throw err;
  }
  const stopAnnouncer = startConfigAnnouncer(ctx);
  const sideWork = Promise.resolve()
    .then(() => options.onReady?.(ctx))
    .catch((err: unknown) => logger.warn({ err }, 'Start-up task failed'));
  logger.info({ concurrency }, `${capitalized(service.replace(/-/g, ' '))} ready`);

  let stopped: Promise<void> | undefined;
  return {
    ctx,
    get active() {
      return runner.active;
    },
    stop() {
      stopped ??= (async () => {
        stopAnnouncer();
        await runner.stop(config.shutdownGraceMs);
        await sideWork;
        await closeContext(ctx);
      })();
      return stopped;
    },
  };
}

const capitalized = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
