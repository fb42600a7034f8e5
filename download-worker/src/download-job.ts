import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import {
  AppError,
  QUALITIES,
  removeCookiesCopy,
  writeCookiesCopy,
  type Redis,
  asFileStore,
  downloadFetchUrl,
  findResults,
  removeFiles,
  storedPath,
  type FileStore,
  runProcess,
  type Config,
  type DownloadResult,
  type JobHandler,
  type JobOutput,
  type JobRun,
  type Logger,
  type Quality,
  type Storage,
} from '@media-jobs/libs';
import { startEgressProxy, type EgressProxy, type EgressProxyOptions } from './egress-proxy.js';
import { probeMedia } from './probe.js';
import { waitForSiteSlot } from './site-slot.js';
import {
  DownloadTracker,
  MEDIA_BASENAME,
  RESULT_FILE,
  buildYtDlpArgs,
  classifyFailure,
  parseProgressLine,
  tooLarge,
} from './yt-dlp.js';

export interface DownloadJobDeps {
  config: Pick<
    Config,
    | 'ytDlpPath'
    | 'ffmpegPath'
    | 'ffprobePath'
    | 'maxDownloadBytes'
    | 'allowPrivateUrls'
    | 'ytDlpCookiesFile'
    | 'ytDlpProxy'
    | 'siteConcurrency'
    | 'siteMinGapMs'
    | 'jobAckWaitMs'
  >;
  /** Cookies PUT to /admin/cookies and the per-site slots live here; without it, only YTDLP_COOKIES_FILE and no pacing. */
  redis?: Redis;
  storage: Storage;
  /** Where results are put (`STORAGE`); the folders of `storage` by default. */
  files?: FileStore;
  logger: Logger;
  /** Options of the egress proxy used while ALLOW_PRIVATE_URLS is false (tests inject a policy). */
  egress?: EgressProxyOptions;
}

interface DownloadRequest {
  /** What yt-dlp is given: decided by the job id (`downloadFetchUrl`), not taken from the user as sent. */
  fetchUrl: string;
  quality: Quality;
}

interface Downloaded {
  path: string;
  formatId: string | null;
  title: string | null;
}

/** Share of the progress bar that the transfer itself takes; the rest is post-processing and probing. */
const DOWNLOAD_SHARE = 0.95;

/** Runs yt-dlp for one download job, probes the result and renames it to `downloads/<id>.<ext>`. */
export function createDownloadHandler(deps: DownloadJobDeps): JobHandler {
  return async (run: JobRun): Promise<JobOutput> => {
    const request = parseRequest(run.job.id, run.job.request);
    const log = deps.logger.child({ job_id: run.job.id, attempt: run.attempt });
    await removeEarlierWorkDirs(deps.storage, run);
    run.progress(0, 'downloading');
    // Only the transfer holds the site's slot, not probing or storing the file.
    const slot = await waitForSiteSlot(deps.config, deps.redis, run, request.fetchUrl, log);
    let downloaded: Downloaded;
    try {
      downloaded = await runYtDlp(deps, run, request, log);
    } finally {
      await slot?.release();
    }
    run.progress(97, 'probing');
    const info = await probeMedia(deps.config.ffprobePath, downloaded.path, run.signal);
    const { size } = await stat(downloaded.path);
    // Merging or extracting can change the size after the last progress line.
    if (size > deps.config.maxDownloadBytes) throw tooLarge(deps.config.maxDownloadBytes);
    const ext = safeExtension(downloaded.path);
    const files = deps.files ?? asFileStore(deps.storage);
    const finalPath = await moveIntoPlace(files, run.job.id, downloaded.path, ext);
    return {
      result: {
        file: `${run.job.id}.${ext}`,
        size_bytes: size,
        ...info,
        container: ext,
        quality: request.quality,
        ...(downloaded.formatId ? { format_id: downloaded.formatId } : {}),
        ...(downloaded.title ? { title: downloaded.title } : {}),
      } satisfies DownloadResult,
      files: [finalPath],
    };
  };
}

/**
 * The gateway validated the request; a worker still refuses anything that could reach yt-dlp
 * as an option. The id says what to fetch: a YouTube id is its canonical watch URL, so the
 * file under an id is always that video, whatever URL form the record holds.
 */
function parseRequest(jobId: string, request: Record<string, unknown>): DownloadRequest {
  const { url, quality = 'best' } = request;
  const invalid = (why: string) => new AppError('download.invalid_request', why, { status: 400 });
  if (typeof url !== 'string' || !/^https?:\/\//i.test(url)) throw invalid('the job has no http(s) url');
  if (typeof quality !== 'string' || !(QUALITIES as readonly string[]).includes(quality)) {
    throw invalid(`unknown quality ${JSON.stringify(quality)}`);
  }
  let fetchUrl: string;
  try {
    fetchUrl = downloadFetchUrl(jobId, url);
  } catch {
    throw invalid('the job url is not a valid URL');
  }
  return { fetchUrl, quality: quality as Quality };
}

async function runYtDlp(
  deps: DownloadJobDeps,
  run: JobRun,
  request: DownloadRequest,
  log: Logger,
): Promise<Downloaded> {
  const { config } = deps;
  const watch = watchOutput(run, config.maxDownloadBytes, log);
  // One proxy per run: its refusals belong to this job alone. It chains to YTDLP_PROXY, if set.
  const proxy: EgressProxy | null = config.allowPrivateUrls
    ? null
    : await startEgressProxy({
        logger: log,
        ...(config.ytDlpProxy ? { upstream: config.ytDlpProxy } : {}),
        ...deps.egress,
      });
  let cookiesFile: string | null = null;
  let exit;
  try {
    cookiesFile = await writeCookiesCopy(deps.redis, config, run.workDir);
    const upstream = proxy?.url ?? (config.ytDlpProxy || undefined);
    const args = buildYtDlpArgs({
      url: request.fetchUrl,
      quality: request.quality,
      workDir: run.workDir,
      ffmpegPath: config.ffmpegPath,
      ...(upstream ? { proxy: upstream } : {}),
      ...(cookiesFile ? { cookiesFile } : {}),
    });
    exit = await runProcess(config.ytDlpPath, args, {
      signal: AbortSignal.any([run.signal, watch.overLimit]),
      cwd: run.workDir,
      onStdoutLine: watch.onLine,
      onStderrLine: watch.onLine,
    });
  } finally {
    await proxy?.close();
    await removeCookiesCopy(cookiesFile);
  }
  const refused = proxy?.refusals[0];
  if (refused && exit.code !== 0 && !run.signal.aborted) {
    // A redirect or a re-resolved name led to a private address: retrying cannot help.
    throw new AppError(
      'download.private_url',
      `the download was refused: ${refused.host}${refused.address && refused.address !== refused.host ? ` (${refused.address})` : ''} is a loopback, private or link-local address; set ALLOW_PRIVATE_URLS=true to allow it`,
      { status: 400, details: { host: refused.host, port: refused.port } },
    );
  }
  if (watch.overLimit.aborted) throw tooLarge(config.maxDownloadBytes);
  if (run.signal.aborted) throw new AppError('download.aborted', 'the download was stopped');
  if (exit.signal && watch.errors.length === 0) {
    // Killed from outside (out of memory, an operator): nothing says the source is at fault.
    throw new AppError('download.failed', `yt-dlp was killed by ${exit.signal}`, { retryable: true });
  }
  if (exit.code !== 0) throw classifyFailure(watch.errors, { code: exit.code, stderrTail: exit.stderr });
  const downloaded = await readResult(run.workDir);
  if (!downloaded) throw new AppError('download.failed', 'yt-dlp finished without writing a media file');
  return downloaded;
}

/**
 * Reads yt-dlp's output lines: progress goes to the job, `ERROR:` lines are kept for the
 * verdict, and `overLimit` fires once the run passes the size limit. The limit is enforced
 * here rather than by yt-dlp (see buildYtDlpArgs); HLS has no size up front.
 */
function watchOutput(run: JobRun, maxBytes: number, log: Logger) {
  const limit = new AbortController();
  const tracker = new DownloadTracker();
  const errors: string[] = [];
  // yt-dlp prints a line per block; only a change is worth an event.
  let last = '';
  const report = (percent: number, stage: string) => {
    const key = `${percent.toFixed(1)} ${stage}`;
    if (key !== last) run.progress(percent, stage);
    last = key;
  };
  const onLine = (line: string) => {
    const progress = parseProgressLine(line);
    if (!progress) {
      if (line.startsWith('ERROR:')) errors.push(line);
      log.debug({ line }, 'yt-dlp');
      return;
    }
    const { percent, bytes } = tracker.update(progress);
    if (bytes > maxBytes) limit.abort();
    report(percent * DOWNLOAD_SHARE, progress.status === 'finished' ? 'processing' : 'downloading');
  };
  return { onLine, errors, overLimit: limit.signal };
}

/** What yt-dlp printed after the move; falls back to the one media file in the folder. */
async function readResult(workDir: string): Promise<Downloaded | null> {
  try {
    const parsed = JSON.parse(await readFile(join(workDir, RESULT_FILE), 'utf8')) as Record<string, unknown>;
    // Only a file in our own folder is ever moved into downloads/.
    if (typeof parsed.filepath === 'string' && dirname(resolve(parsed.filepath)) === resolve(workDir)) {
      await stat(parsed.filepath);
      return {
        path: parsed.filepath,
        formatId: typeof parsed.format_id === 'string' ? parsed.format_id : null,
        title: typeof parsed.title === 'string' ? parsed.title : null,
      };
    }
  } catch {
    // No result file, or a path that is not there: look for the file itself.
  }
  const names = (await readdir(workDir)).filter(
    (n) => n.startsWith(`${MEDIA_BASENAME}.`) && !/\.(part|ytdl|temp)$/.test(n),
  );
  return names.length === 1 ? { path: join(workDir, names[0] as string), formatId: null, title: null } : null;
}

/**
 * A run that starts owns the job, so a work folder of an earlier run of the same job belongs
 * to a worker that died or lost it: its partial files go now rather than at the next sweep.
 */
async function removeEarlierWorkDirs(storage: Storage, run: JobRun): Promise<void> {
  const names = await readdir(storage.tmp).catch(() => [] as string[]);
  const earlier = names.filter((n) => n.startsWith(`${run.job.id}.`) && n !== basename(run.workDir));
  await removeFiles(earlier.map((n) => join(storage.tmp, n)));
}

/** The extension yt-dlp chose, if it is a plain one; no name from the source reaches the file system. */
function safeExtension(path: string): string {
  const ext = extname(path).slice(1).toLowerCase();
  return /^[a-z0-9]{1,8}$/.test(ext) ? ext : 'bin';
}

/** Puts into `downloads`, replacing a result of an earlier run of this id with another extension. */
async function moveIntoPlace(files: FileStore, id: string, from: string, ext: string): Promise<string> {
  const name = `${id}.${ext}`;
  const stale = (await findResults(files, 'downloads', id)).filter((f) => f.name !== name);
  await files.remove(
    'downloads',
    stale.map((f) => f.name),
  );
  await files.put('downloads', name, from);
  return storedPath(files, 'downloads', name);
}
