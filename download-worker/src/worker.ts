import {
  JobRunner,
  announceConfig,
  closeContext,
  createLogger,
  errorMessage,
  openContext,
  runProcess,
  type Config,
  type Logger,
} from '@media-jobs/libs';
import { createDownloadHandler } from './download-job.js';

export interface DownloadWorker {
  /** Stops taking jobs, lets running ones finish (or hands them back after the grace period), then disconnects. Safe to call twice. */
  stop(): Promise<void>;
}

export async function startDownloadWorker(
  config: Config,
  logger: Logger = createLogger('download-worker', config),
): Promise<DownloadWorker> {
  const ctx = await openContext('download-worker', config, logger);
  const runner = new JobRunner(ctx, {
    kind: 'download',
    handler: createDownloadHandler({ config, storage: ctx.storage, logger }),
    concurrency: config.downloadConcurrency,
    timeoutMs: config.downloadTimeoutMs,
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
  const versionLogged = logToolVersion(config.ytDlpPath, logger);
  logger.info({ concurrency: config.downloadConcurrency }, 'Download worker ready');

  let stopped: Promise<void> | undefined;
  return {
    stop() {
      stopped ??= (async () => {
        clearInterval(announcer);
        await runner.stop(config.shutdownGraceMs);
        await versionLogged;
        await closeContext(ctx);
      })();
      return stopped;
    },
  };
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
