import {
  createLogger,
  errorMessage,
  runProcess,
  startWorker,
  type Config,
  type Logger,
  type Worker,
} from '@media-jobs/libs';
import { createDownloadHandler } from './download-job.js';
import { tooSlow } from './yt-dlp.js';

export type DownloadWorker = Worker;

/** The download worker: the shared worker runtime with the yt-dlp handler. */
export function startDownloadWorker(
  config: Config,
  logger: Logger = createLogger('download-worker', config),
): Promise<DownloadWorker> {
  return startWorker({
    service: 'download-worker',
    kind: 'download',
    config,
    logger,
    handler: (ctx) =>
      createDownloadHandler({ config, storage: ctx.storage, files: ctx.files, redis: ctx.redis, logger }),
    concurrency: config.downloadConcurrency,
    timeoutMs: config.downloadTimeoutMs,
    timeoutError: tooSlow,
    onReady: () => logToolVersion(config.ytDlpPath, logger),
  });
}

/** Operators need the yt-dlp version when a site breaks; a missing yt-dlp is worth a loud line at start. */
async function logToolVersion(ytDlpPath: string, logger: Logger): Promise<void> {
  let version = '';
  try {
    const res = await runProcess(ytDlpPath, ['--version'], {
      timeoutMs: 15_000,
      onStdoutLine: (l) => (version ||= l.trim()),
    });
    if (res.code === 0) logger.info({ yt_dlp: version }, `yt-dlp ${version}`);
    else logger.warn({ code: res.code, stderr: res.stderr.trim() }, 'yt-dlp --version failed');
  } catch (err) {
    logger.error(
      { err: errorMessage(err) },
      'yt-dlp cannot be started; download jobs will fail until it is installed',
    );
  }
}
