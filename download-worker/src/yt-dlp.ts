import { join } from 'node:path';
import { AppError, failureKind, qualityHeight, YTDLP_ONE_ITEM_ARGS, type Quality } from '@media-jobs/libs';

// What yt-dlp's errors mean lives in libs, shared with the gateway's /probe.
export { FAILURE_KINDS, classifyFailure, errorReason } from '@media-jobs/libs';

/**
 * Everything about talking to yt-dlp that needs no process: the argument array, the
 * progress lines it prints, and what its errors mean. Checked against yt-dlp 2023.03.04
 * (Debian bookworm) and current releases.
 */

/** Prefix of our machine-readable progress lines, so they never mix with yt-dlp's own chatter. */
export const PROGRESS_PREFIX = 'mj-progress ';
/** yt-dlp writes the final path here once the file is in place (after every post-processor). */
export const RESULT_FILE = 'yt-dlp-result.json';
/** Base name of the media file inside the work folder; the extension is yt-dlp's choice. */
export const MEDIA_BASENAME = 'media';

export interface YtDlpArgsOptions {
  url: string;
  quality: Quality;
  /** A private folder: the output, partial files and the result file all stay in it. */
  workDir: string;
  ffmpegPath: string;
  socketTimeoutSeconds?: number;
  /** Every connection goes through this proxy (the worker's egress proxy, or YTDLP_PROXY), redirects included. */
  proxy?: string;
  /** This run's private copy of the cookies (yt-dlp writes the jar back to it at exit). */
  cookiesFile?: string;
}

/**
 * Format selection per quality. `-S res:<H>` prefers the largest rendition whose smallest
 * dimension is at most H (so portrait video works) and falls back to the smallest one when
 * none is that small, instead of failing the job.
 */
export function formatArgs(quality: Quality): string[] {
  if (quality === 'audio') return ['-f', 'ba/b', '-x'];
  if (quality === 'worst') return ['-f', 'bv*+ba/b', '-S', '+res,+size,+br,+fps'];
  const height = qualityHeight(quality);
  return height === null ? ['-f', 'bv*+ba/b'] : ['-f', 'bv*+ba/b', '-S', `res:${height}`];
}

// yt-dlp reads `%` as a template in --print-to-file's file name; `%%` is a literal percent sign.
const literalTemplate = (path: string): string => path.replaceAll('%', '%%');

/**
 * The whole argument array; the URL comes last, after `--`, so it can never be read as an option.
 *
 * No `--max-filesize`: yt-dlp applies it to each HLS/DASH fragment too and silently drops a
 * fragment bigger than the limit, which then surfaces as "fragment 1 not found" (a network
 * error, retried) instead of "too large". The worker enforces the limit itself from the
 * progress lines instead: the exact size of a plain file is in its first line, so it is
 * refused after a few KB, just as `--max-filesize` would.
 */
export function buildYtDlpArgs(options: YtDlpArgsOptions): string[] {
  const args = [
    // A URL that is only a playlist must still give one file, not all of them.
    ...YTDLP_ONE_ITEM_ARGS,
    '--newline',
    // The progress lines are the worker's only view of the transfer (and of the size limit).
    '--progress',
    '--progress-template',
    `download:${PROGRESS_PREFIX}%(progress)j`,
    '--print-to-file',
    'after_move:{"filepath": %(filepath)j, "format_id": %(format_id)j, "title": %(title)j}',
    literalTemplate(join(options.workDir, RESULT_FILE)),
    '--paths',
    options.workDir,
    '--output',
    `${MEDIA_BASENAME}.%(ext)s`,
    '--no-mtime',
    '--socket-timeout',
    String(options.socketTimeoutSeconds ?? 30),
    '--retries',
    '3',
    '--fragment-retries',
    '3',
    // A skipped fragment would leave a silently broken file.
    '--abort-on-unavailable-fragments',
    ...formatArgs(options.quality),
  ];
  if (options.ffmpegPath !== 'ffmpeg') args.push('--ffmpeg-location', options.ffmpegPath);
  if (options.proxy) args.push('--proxy', options.proxy);
  if (options.cookiesFile) args.push('--cookies', options.cookiesFile);
  args.push('--', options.url);
  return args;
}

/** The fields of yt-dlp's progress dict we use; any may be missing or null. */
export interface YtDlpProgress {
  status: string;
  downloaded_bytes: number | null;
  total_bytes: number | null;
  total_bytes_estimate: number | null;
  fragment_index: number | null;
  fragment_count: number | null;
  /** The file being written; a merged download writes one per format. */
  filename: string | null;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null);

/** One of our progress lines, or null for any other line. */
export function parseProgressLine(line: string): YtDlpProgress | null {
  const at = line.indexOf(PROGRESS_PREFIX);
  if (at < 0) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(line.slice(at + PROGRESS_PREFIX.length));
  } catch {
    return null;
  }
  if (typeof raw !== 'object' || raw === null) return null;
  const p = raw as Record<string, unknown>;
  const filename = p.tmpfilename ?? p.filename;
  return {
    status: typeof p.status === 'string' ? p.status : 'downloading',
    downloaded_bytes: num(p.downloaded_bytes),
    total_bytes: num(p.total_bytes),
    total_bytes_estimate: num(p.total_bytes_estimate),
    fragment_index: num(p.fragment_index),
    fragment_count: num(p.fragment_count),
    filename: typeof filename === 'string' ? filename : null,
  };
}

/** Percent (0-100) of one file, or null when yt-dlp does not know yet. */
export function progressPercent(p: YtDlpProgress): number | null {
  if (p.status === 'finished') return 100;
  // An exact size beats fragment counting, which beats yt-dlp's extrapolated estimate.
  let ratio: number | null = null;
  if (p.total_bytes && p.downloaded_bytes !== null) ratio = p.downloaded_bytes / p.total_bytes;
  else if (p.fragment_count && p.fragment_index !== null) ratio = p.fragment_index / p.fragment_count;
  else if (p.total_bytes_estimate && p.downloaded_bytes !== null)
    ratio = p.downloaded_bytes / p.total_bytes_estimate;
  return ratio === null ? null : Math.max(0, Math.min(100, ratio * 100));
}

/**
 * Follows one run over every file it writes (a merged download restarts its counter for the
 * audio part): `bytes` is what the run has written or, where the exact size is known, will
 * write, so a file over the limit is caught at its first progress line. The percentage never
 * goes backwards.
 */
export class DownloadTracker {
  private readonly bytesByFile = new Map<string, number>();
  private best = 0;

  update(p: YtDlpProgress): { percent: number; bytes: number } {
    const key = (p.filename ?? '').replace(/\.part$/, '');
    const known = Math.max(p.downloaded_bytes ?? 0, p.total_bytes ?? 0);
    this.bytesByFile.set(key, Math.max(this.bytesByFile.get(key) ?? 0, known));
    const percent = progressPercent(p);
    if (percent !== null) this.best = Math.max(this.best, percent);
    return { percent: this.best, bytes: this.bytes };
  }

  get bytes(): number {
    let sum = 0;
    for (const b of this.bytesByFile.values()) sum += b;
    return sum;
  }
}

export function tooLarge(maxBytes: number): AppError {
  const { code, status } = failureKind('limits.size');
  return new AppError(
    code,
    `the media is larger than the ${formatMb(maxBytes)} MB download limit (MAX_DOWNLOAD_MB)`,
    { status, details: { max_bytes: maxBytes } },
  );
}

/** A run longer than DOWNLOAD_TIMEOUT_SECONDS: final, as the next run would take as long. */
export function tooSlow(timeoutMs: number): AppError {
  const { code, status } = failureKind('limits.time');
  return new AppError(
    code,
    `the download took longer than the ${Math.round(timeoutMs / 1000)} s limit (DOWNLOAD_TIMEOUT_SECONDS)`,
    { status },
  );
}

function formatMb(bytes: number): string {
  return String(Number((bytes / (1024 * 1024)).toFixed(2)));
}
