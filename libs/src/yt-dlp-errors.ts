import { AppError } from './errors.js';

/**
 * What yt-dlp's failures mean, shared by the download worker and the gateway's `/probe`: one
 * table of failure codes, each final (the job fails at once) or retried with backoff (the job
 * runner's `retryable`), with the message a person reads and the yt-dlp messages it stands for.
 * The patterns are taken from yt-dlp's own texts: `extractor/common.py` (`raise_login_required`,
 * `raise_geo_restricted`, `_login_hint`), `extractor/youtube/_video.py` (YouTube's playability
 * reasons, quoted as YouTube sends them), `utils/_utils.py` (`ExtractorError`,
 * `GeoRestrictedError`) and `networking/exceptions.py` (`HTTPError`, `TransportError`,
 * `ProxyError`, `CertificateVerifyError`, `IncompleteRead`), and Python's socket errors.
 */

export interface FailureKind {
  /** Dotted code, in the job's `error.code` and in `/probe`'s `source_error.code`. */
  readonly code: string;
  /** Final: no retry, the job fails at once. Otherwise the job is queued again with a growing delay. */
  readonly final: boolean;
  /** HTTP status the gateway would answer with. */
  readonly status: number;
  /** What went wrong and what to do, for a person; yt-dlp's own reason is appended. */
  readonly message: string;
  /** yt-dlp messages (matched case-insensitively); empty for codes the worker raises itself. */
  readonly patterns: readonly RegExp[];
}

const cookiesHint = (account = 'a signed-in browser session'): string =>
  `give the workers the cookies of ${account} (a Netscape cookies.txt in YTDLP_COOKIES_FILE, or PUT /admin/cookies) and submit again`;

const kind = (
  code: string,
  final: boolean,
  status: number,
  message: string,
  patterns: RegExp[] = [],
): FailureKind => Object.freeze({ code, final, status, message, patterns: Object.freeze(patterns) });

/**
 * Every failure code a download can end with, in matching order: the first kind with a
 * pattern that matches yt-dlp's last `ERROR:` line wins (then the whole output is tried).
 * Specific kinds come before broad ones ("Sign in to confirm your age" before "Sign in").
 */
export const FAILURE_KINDS: readonly FailureKind[] = Object.freeze([
  kind(
    'tool.missing',
    false,
    500,
    'a tool yt-dlp needs is missing on the worker; an operator must install it',
    [/ffmpeg (is )?not found|ffprobe and ffmpeg not found|ffmpeg not installed/i],
  ),
  kind(
    'source.bot_check',
    true,
    422,
    `the site wants proof that this is not a bot ("Sign in to confirm you're not a bot"): ${cookiesHint()}`,
    [/confirm you[’']?re not a (bot|robot)/i, /requiring a captcha challenge/i, /not a bot|captcha/i],
  ),
  kind(
    'source.age_restricted',
    true,
    422,
    `the media is age-restricted: ${cookiesHint('a signed-in adult account')}`,
    [/confirm your age|age[- ]restricted|age[- ]verification|age[- ]gate|inappropriate for some users/i],
  ),
  kind(
    'source.members_only',
    true,
    422,
    `the media is for the channel's members only: ${cookiesHint('a signed-in account that is a member')}`,
    [/members[- ]only|join this channel to get access|available to this channel's members/i],
  ),
  kind('source.private', true, 422, 'the media is private; only accounts it is shared with can see it', [
    /private video|this video is private|video is private|is a private/i,
  ]),
  kind(
    'source.login_required',
    true,
    422,
    `the site needs a signed-in account for this media: ${cookiesHint()}`,
    [
      /only available for registered users|login details are needed|login required|requires (a )?login|needs? (to )?(sign|log) ?in|sign in to/i,
      /HTTP Error 401\b/i,
    ],
  ),
  kind(
    'source.geo_blocked',
    true,
    451,
    'the media is not available from the country the workers download from',
    [
      /not available (from|in) your (location|country|region)|geo[- ]?restrict|not made this video available in your country|blocked it in your country/i,
      /HTTP Error 451\b/i,
    ],
  ),
  kind(
    'source.rate_limited',
    false,
    429,
    'the site is limiting how often it is asked (HTTP 429 or "try again later"); the job is tried again later',
    [/HTTP Error (429|425)\b|too many requests|rate[- ]?limit|content isn[’']?t available, try again later/i],
  ),
  kind(
    'source.not_started',
    true,
    422,
    'the live stream or premiere has not started yet; submit it again once it runs',
    [
      /live event will begin|premieres? in|this live (stream|event) (has not|hasn't) started|is_upcoming|waiting for (the )?(live|stream)|scheduled to start/i,
    ],
  ),
  kind('source.drm', true, 422, 'the media is DRM-protected and cannot be downloaded', [
    /DRM[- ]protected|\bDRM\b/,
  ]),
  kind('source.unsupported', true, 422, 'no yt-dlp extractor understands this URL', [
    /unsupported url|no suitable (info)?extractor|not a valid URL|invalid URL/i,
  ]),
  kind('source.no_formats', true, 422, 'the source offers no format that can be downloaded', [
    /no video formats found|requested format is not available|no formats (found|available)|only images are available/i,
  ]),
  kind('source.forbidden', true, 422, 'the site refused the download (HTTP 403)', [/HTTP Error 403\b/i]),
  kind('source.host_not_found', true, 422, 'the host name of the URL does not exist', [
    /name or service not known|nodename nor servname|no address associated|\[Errno -2\]|\[Errno -5\]|getaddrinfo ENOTFOUND/i,
  ]),
  kind(
    'source.unavailable',
    true,
    422,
    'the media is not available (removed, never existed, or taken down)',
    [
      /video unavailable|has been removed|no longer available|account .*(terminated|closed)|does not exist|is not available|content is not available|copyright/i,
      /HTTP Error (400|404|405|410)\b/i,
    ],
  ),
  kind(
    'network.dns',
    false,
    502,
    'the host name could not be resolved for now (DNS); the job is tried again later',
    [
      /temporary failure in name resolution|failed to resolve|\[Errno -3\]|getaddrinfo EAI_AGAIN|name resolution/i,
    ],
  ),
  kind(
    'network.proxy',
    false,
    502,
    'the proxy (YTDLP_PROXY) refused or failed the connection; the job is tried again later',
    [
      /ProxyError|unable to connect to proxy|proxy authentication required|HTTP Error 407\b|tunnel connection failed|cannot connect to proxy/i,
    ],
  ),
  kind('network.tls', true, 502, "the site's TLS certificate is not valid, so the download was stopped", [
    /certificate verify failed|CERTIFICATE_VERIFY_FAILED|CertificateVerifyError|self[- ]signed certificate|certificate has expired/i,
  ]),
  kind('network.timeout', false, 504, 'the site did not answer in time; the job is tried again later', [
    /timed? ?out|HTTP Error 408\b/i,
  ]),
  kind('network.refused', false, 502, 'the site refused the connection; the job is tried again later', [
    /connection refused|\[Errno 111\]|ECONNREFUSED/i,
  ]),
  kind(
    'network.unreachable',
    false,
    502,
    'the site cannot be reached from the workers now; the job is tried again later',
    [/network is unreachable|no route to host|host is unreachable|\[Errno 101\]|\[Errno 113\]/i],
  ),
  kind(
    'network.http_5xx',
    false,
    502,
    'the site answered with a server error (HTTP 5xx); the job is tried again later',
    [/HTTP Error 5\d\d\b/i],
  ),
  kind('network.interrupted', false, 502, 'the transfer broke off; the job is tried again later', [
    /connection (reset|aborted)|remote end closed|RemoteDisconnected|IncompleteRead|bytes read, \d+ more expected|EOF occurred|did not get any data blocks|broken pipe|SSLError|SSL: /i,
    /fragment \d+ not found|unable to download video data|giving up after \d+ fragment retries/i,
  ]),
  kind('network.error', false, 502, 'the site could not be reached properly; the job is tried again later', [
    /unable to download (webpage|json|api page|video data|m3u8|xml)|TransportError|urlopen error/i,
  ]),
  kind('limits.size', true, 413, 'the media is larger than the download limit (MAX_DOWNLOAD_MB)', [
    /larger than max-filesize|File is larger than/i,
  ]),
  kind('limits.time', true, 504, 'the download took longer than the time limit (DOWNLOAD_TIMEOUT_SECONDS)'),
  kind('ytdlp.failed', true, 502, 'yt-dlp failed in a way this service does not know'),
]);

const BY_CODE = new Map(FAILURE_KINDS.map((k) => [k.code, k]));

/** The table row of a code (throws on a code that is not in the table: a programming error). */
export function failureKind(code: string): FailureKind {
  const found = BY_CODE.get(code);
  if (!found) throw new Error(`unknown failure code ${code}`);
  return found;
}

/** An `AppError` for a row of the table, with `reason` (yt-dlp's words, or ours) after the message. */
export function failureError(code: string, reason?: string, details?: unknown): AppError {
  const k = failureKind(code);
  return new AppError(k.code, reason ? `${k.message} (${reason})` : k.message, {
    status: k.status,
    retryable: !k.final,
    ...(details === undefined ? {} : { details }),
  });
}

/**
 * The reason in an `ERROR:` line, without the extractor tag, the bug-report advice, yt-dlp's
 * command-line advice (`Use --cookies ...`: users cannot pass options) and the Python cause.
 */
export function errorReason(line: string): string {
  return line
    .replace(/^ERROR:\s*/, '')
    .replace(/^\[[\w:]+\]\s*[^:\s]*:\s*/, '')
    .replace(/;\s*please report this issue.*$/is, '')
    .replace(/\s*\(caused by .*\)\s*$/s, '')
    .replace(/[.\s]*\bUse --[a-z-]+.*$/is, '')
    .replace(/[.\s]*\bIt is recommended to use `-t sleep`.*$/is, '')
    .trim();
}

/** The first row whose pattern matches `text`, or null. */
export function matchFailure(text: string): FailureKind | null {
  for (const k of FAILURE_KINDS) if (k.patterns.some((re) => re.test(text))) return k;
  return null;
}

/**
 * Maps a failed run to an `AppError` from the table. `errors` are yt-dlp's `ERROR:` lines; the
 * last one is the verdict, then the whole output is tried (a line that says only "Unable to
 * continue" after the cause).
 */
export function classifyFailure(
  errors: string[],
  exit: { code: number | null; stderrTail: string },
): AppError {
  const last = errors.at(-1);
  const reason = last
    ? errorReason(last)
    : lastLine(exit.stderrTail) || `yt-dlp exited with code ${exit.code}`;
  const found =
    (last ? matchFailure(last) : null) ?? matchFailure(errors.join('\n') || exit.stderrTail) ?? null;
  return failureError(found?.code ?? 'ytdlp.failed', reason, { exit_code: exit.code });
}

function lastLine(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('WARNING:'))
      .at(-1) ?? ''
  );
}
