import { createLogger, startWorker, type Config, type Logger, type Worker } from '@media-jobs/libs';
import { createNormalizeHandler } from './normalize-job.js';

export type NormalizeWorker = Worker;

/** The normalize worker: the shared worker runtime with the ffmpeg handler. */
export function startNormalizeWorker(
  config: Config,
  logger: Logger = createLogger('normalize-worker', config),
): Promise<NormalizeWorker> {
  return startWorker({
    service: 'normalize-worker',
    kind: 'normalize',
    config,
    logger,
    handler: (ctx) => createNormalizeHandler({ config, storage: ctx.storage, files: ctx.files, logger }),
    concurrency: config.normalizeConcurrency,
    timeoutMs: config.normalizeTimeoutMs,
  });
}
