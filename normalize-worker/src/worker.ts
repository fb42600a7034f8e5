import {
  JobRunner,
  announceConfig,
  closeContext,
  createLogger,
  openContext,
  type Config,
  type Logger,
} from '@media-jobs/libs';
import { createNormalizeHandler } from './normalize-job.js';

export interface NormalizeWorker {
  /** Stops taking jobs, lets running ones finish (or hands them back after the grace period), then disconnects. Safe to call twice. */
  stop(): Promise<void>;
}

export async function startNormalizeWorker(
  config: Config,
  logger: Logger = createLogger('normalize-worker', config),
): Promise<NormalizeWorker> {
  const ctx = await openContext('normalize-worker', config, logger);
  const runner = new JobRunner(ctx, {
    kind: 'normalize',
    handler: createNormalizeHandler({ config, storage: ctx.storage, logger }),
    concurrency: config.normalizeConcurrency,
    timeoutMs: config.normalizeTimeoutMs,
  });
  try {
    await runner.start();
  } catch (err) {
    await closeContext(ctx);
    throw err;
  }
  announceConfig(ctx);
  const announcer = setInterval(() => announceConfig(ctx), 60_000);
  announcer.unref();
  logger.info({ concurrency: config.normalizeConcurrency }, 'Normalize worker ready');

  let stopped: Promise<void> | undefined;
  return {
    stop() {
      stopped ??= (async () => {
        clearInterval(announcer);
        await runner.stop(config.shutdownGraceMs);
        await closeContext(ctx);
      })();
      return stopped;
    },
  };
}
