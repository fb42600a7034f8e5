import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { QUALITIES, qualityHeight, type Quality } from './download-id.js';
import { startEgressProxy, type EgressProxyOptions } from './egress-proxy.js';
import { AppError } from './errors.js';
import { runProcess } from './process.js';
import { classifyFailure } from './yt-dlp-errors.js';
import { writeCookiesCopy } from './ytdlp-cookies.js';
import type { Redis } from './redis.js';

/**
 * What a source offers, asked of `yt-dlp --dump-json` without downloading anything: for
 * `GET /probe`, which says what a submission would do before there is a job.
 */

export interface OfferedQuality {
  quality: Quality;
  /** The rendition this quality selects; null when yt-dlp does not know its size (or for audio). */
  width: number | null;
  height: number | null;
}

export interface SourceInfo {
  title: string | null;
  duration_s: number | null;
  /** yt-dlp's extractor, e.g. `youtube` or `generic`. */
  extractor: string | null;
  qualities: OfferedQuality[];
}

export interface SourceProbeOptions {
  ytDlpPath: string;
  url: string;
  timeoutMs: number;
  /** Options of the egress proxy every connection goes through; null: no proxy (ALLOW_PRIVATE_URLS). */
  egress: EgressProxyOptions | null;
  /** YTDLP_PROXY: the egress proxy chains to it, or yt-dlp uses it directly when there is none. */
  upstreamProxy?: string;
  /** The cookies a download would use (PUT /admin/cookies, else YTDLP_COOKIES_FILE); a private copy lives in `tmpDir` for the run. */
  cookies?: { redis: Redis | undefined; ytDlpCookiesFile: string; tmpDir: string };
  signal?: AbortSignal;
}

interface FormatJson {
  width?: unknown;
  height?: unknown;
  vcodec?: unknown;
  acodec?: unknown;
}

/**
 * What every yt-dlp run of the project starts with: no user or system config, no self-update,
 * no cache folder, and one item even for a URL that is only a playlist.
 */
export const YTDLP_ONE_ITEM_ARGS: readonly string[] = [
  '--ignore-config',
  '--no-update',
  '--no-cache-dir',
  '--no-playlist',
  '--playlist-items',
  '1',
];

/** The argument array: one item, nothing written, the URL after `--`. */
export function sourceProbeArgs(url: string, proxy?: string, cookiesFile?: string): string[] {
  const args = [
    ...YTDLP_ONE_ITEM_ARGS,
    '--dump-json',
    '--skip-download',
    '--no-progress',
    '--socket-timeout',
    '10',
    '--retries',
    '1',
    '--extractor-retries',
    '1',
  ];
  if (proxy) args.push('--proxy', proxy);
  if (cookiesFile) args.push('--cookies', cookiesFile);
  args.push('--', url);
  return args;
}

const size = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : null);
const codec = (v: unknown): string | null => (typeof v === 'string' && v !== 'none' ? v : null);

interface Rendition {
  width: number | null;
  height: number | null;
  /** The shorter side, which the quality bounds. */
  side: number;
}

/**
 * The qualities worth offering, each with the rendition it selects as the worker's format
 * selection does (`-S res:<H>`: the largest rendition whose shorter side is at most H, else the
 * smallest): `best`, one `<H>p` per rendition some bound selects (the smallest such bound),
 * `worst`, and `audio` when a format carries audio.
 */
export function offeredQualities(formats: FormatJson[]): OfferedQuality[] {
  const bySide = new Map<number, Rendition>();
  for (const f of formats) {
    const [width, height] = [size(f.width), size(f.height)];
    if (f.vcodec === 'none' || (width === null && height === null)) continue;
    const side = Math.min(width ?? Infinity, height ?? Infinity);
    const known = bySide.get(side);
    if (!known || (width ?? 0) * (height ?? 0) > (known.width ?? 0) * (known.height ?? 0))
      bySide.set(side, { width, height, side });
  }
  const renditions = [...bySide.values()].sort((a, b) => b.side - a.side);
  const view = (quality: Quality, r: Rendition | null): OfferedQuality => ({
    quality,
    width: r?.width ?? null,
    height: r?.height ?? null,
  });
  const out: OfferedQuality[] = [view('best', renditions[0] ?? null)];
  const chosen = new Set<Rendition>();
  // From the smallest bound up, so each rendition is named by the smallest bound that selects it.
  const bounds = QUALITIES.map((q) => [q, qualityHeight(q)] as const).filter(([, h]) => h !== null);
  for (const [quality, bound] of [...bounds].reverse()) {
    const pick = renditions.find((r) => r.side <= (bound as number));
    if (pick && !chosen.has(pick)) {
      chosen.add(pick);
      out.push(view(quality, pick));
    }
  }
  // Largest first, as QUALITIES lists them.
  out.sort((a, b) => QUALITIES.indexOf(a.quality) - QUALITIES.indexOf(b.quality));
  if (renditions.length > 0) out.push(view('worst', renditions.at(-1) ?? null));
  if (formats.some((f) => codec(f.acodec) !== null)) out.push(view('audio', null));
  return out;
}

/** Reduces yt-dlp's JSON of one item to `SourceInfo`. */
export function sourceInfo(json: Record<string, unknown>): SourceInfo {
  const formats = Array.isArray(json.formats) ? (json.formats as FormatJson[]) : [json as FormatJson];
  const duration = typeof json.duration === 'number' && Number.isFinite(json.duration) ? json.duration : null;
  return {
    title: typeof json.title === 'string' ? json.title : null,
    duration_s: duration === null ? null : Math.round(duration * 1000) / 1000,
    extractor: typeof json.extractor === 'string' ? json.extractor : null,
    qualities: offeredQualities(formats),
  };
}

/**
 * Runs `yt-dlp --dump-json` on `url` behind the egress proxy (so a redirect to a private
 * address is refused as in a download) and within `timeoutMs`. Failures are AppErrors with
 * the codes a download would end with (`FAILURE_KINDS`: `source.unavailable`, `network.timeout`, ...; or `download.private_url`),
 * or `probe.timeout`.
 */
export async function probeSource(options: SourceProbeOptions): Promise<SourceInfo> {
  const proxy = options.egress
    ? await startEgressProxy({
        ...(options.upstreamProxy ? { upstream: options.upstreamProxy } : {}),
        ...options.egress,
      })
    : null;
  let json = '';
  const errors: string[] = [];
  let exit;
  let cookiesDir: string | null = null;
  try {
    let cookiesFile: string | null = null;
    if (options.cookies) {
      cookiesDir = await mkdtemp(join(options.cookies.tmpDir, 'probe-'));
      cookiesFile = await writeCookiesCopy(options.cookies.redis, options.cookies, cookiesDir);
    }
    const viaProxy = proxy?.url ?? (options.upstreamProxy || undefined);
    exit = await runProcess(
      options.ytDlpPath,
      sourceProbeArgs(options.url, viaProxy, cookiesFile ?? undefined),
      {
        ...(options.signal ? { signal: options.signal } : {}),
        timeoutMs: options.timeoutMs,
        killGraceMs: 1000,
        // One JSON line; anything else on stdout is not ours.
        onStdoutLine: (line) => {
          if (line.startsWith('{')) json ||= line;
        },
        onStderrLine: (line) => {
          if (line.startsWith('ERROR:')) errors.push(line);
        },
      },
    );
  } finally {
    await proxy?.close();
    if (cookiesDir) await rm(cookiesDir, { recursive: true, force: true });
  }
  const refused = proxy?.refusals[0];
  if (refused && exit.code !== 0)
    throw new AppError(
      'download.private_url',
      `the source was refused: ${refused.host} is a loopback, private or link-local address; set ALLOW_PRIVATE_URLS=true to allow it`,
      { status: 400, details: { host: refused.host, port: refused.port } },
    );
  if (exit.timedOut)
    throw new AppError('probe.timeout', `yt-dlp did not answer within ${options.timeoutMs / 1000} s`, {
      status: 504,
      retryable: true,
    });
  if (exit.aborted) throw new AppError('probe.aborted', 'the probe was stopped', { retryable: true });
  if (exit.code !== 0 || !json) throw classifyFailure(errors, { code: exit.code, stderrTail: exit.stderr });
  try {
    return sourceInfo(JSON.parse(json) as Record<string, unknown>);
  } catch (err) {
    throw new AppError('probe.failed', 'yt-dlp printed no readable JSON', { status: 502, cause: err });
  }
}
