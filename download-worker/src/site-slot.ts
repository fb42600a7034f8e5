import {
  AppError,
  errorMessage,
  siteOf,
  tryAcquireSiteSlot,
  type Config,
  type JobRun,
  type Logger,
  type Redis,
  type SiteSlot,
} from '@media-jobs/libs';

/** Longest pause between two tries at a busy site's slot: a freed slot is taken within it. */
const MAX_POLL_MS = 2000;

/**
 * Waits until this run may start downloading from the URL's site (SITE_CONCURRENCY,
 * SITE_MIN_GAP_SECONDS), telling the job's progress events why it waits. Returns the slot to
 * release once yt-dlp is done, or null when pacing is off. The wait counts against the job's
 * DOWNLOAD_TIMEOUT_SECONDS, and the run keeps its place in this worker's DOWNLOAD_CONCURRENCY.
 */
export async function waitForSiteSlot(
  config: Pick<Config, 'siteConcurrency' | 'siteMinGapMs' | 'jobAckWaitMs'>,
  redis: Redis | undefined,
  run: JobRun,
  url: string,
  log: Logger,
): Promise<SiteSlot | null> {
  if (!redis || (config.siteConcurrency === 0 && config.siteMinGapMs === 0)) return null;
  const site = siteOf(url);
  let told = '';
  for (;;) {
    if (run.signal.aborted) throw new AppError('download.aborted', 'the download was stopped');
    let attempt;
    try {
      attempt = await tryAcquireSiteSlot(redis, {
        site,
        limit: config.siteConcurrency,
        minGapMs: config.siteMinGapMs,
        // Lapses about as fast as the job itself is given up by JetStream after a crash.
        leaseMs: Math.max(3000, config.jobAckWaitMs),
        holder: run.job.id,
      });
    } catch (err) {
      throw new AppError(
        'download.pacing_unavailable',
        `cannot count downloads per site: ${errorMessage(err)}`,
        {
          status: 503,
          retryable: true,
        },
      );
    }
    if (attempt.ok) {
      if (told) {
        run.progress(0, 'downloading');
        log.info({ site }, 'Site slot taken');
      }
      return attempt.slot;
    }
    const stage =
      attempt.reason === 'busy'
        ? `waiting: ${attempt.held} of ${config.siteConcurrency} downloads from ${site} running (SITE_CONCURRENCY)`
        : `waiting: at most one start from ${site} every ${config.siteMinGapMs / 1000} s (SITE_MIN_GAP_SECONDS)`;
    if (stage !== told) {
      run.progress(0, stage);
      log.info({ site, held: attempt.held, reason: attempt.reason }, 'Waiting for a site slot');
      told = stage;
    }
    await pause(Math.min(MAX_POLL_MS, Math.max(50, attempt.waitMs)), run.signal);
  }
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
