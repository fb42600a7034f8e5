import { AppError } from './errors.js';

/**
 * What yt-dlp's failures mean, shared by the download worker and the gateway's `/probe`:
 * a source that is gone or refused is final, a network hiccup may pass on another try, a
 * missing tool may be fixed by an operator.
 */

/** The reason in an `ERROR:` line, without the extractor tag, the bug-report advice and the Python cause. */
export function errorReason(line: string): string {
  return line
    .replace(/^ERROR:\s*/, '')
    .replace(/^\[[\w:]+\]\s*[^:\s]*:\s*/, '')
    .replace(/;\s*please report this issue.*$/is, '')
    .replace(/\s*\(caused by .*\)\s*$/s, '')
    .trim();
}

const UNAVAILABLE = [
  /unsupported url/i,
  /HTTP Error (400|401|403|404|405|410|451)\b/i,
  /no video formats found/i,
  /requested format is not available/i,
  /video unavailable|private video|has been removed|is not available|members[- ]only|sign in to confirm/i,
  /not a valid URL|Invalid URL/i,
  // The host does not exist (a transient DNS failure says "temporary failure" instead).
  /name or service not known|nodename nor servname|no address associated/i,
];
const NETWORK = [
  /HTTP Error (408|425|429|5\d\d)\b/i,
  /timed? ?out/i,
  /connection (reset|refused|aborted)|remote end closed|RemoteDisconnected|IncompleteRead|EOF occurred/i,
  /temporary failure in name resolution|network is unreachable|no route to host/i,
  /fragment \d+ not found|unable to download (video data|webpage)/i,
];
const TOOL_MISSING = /ffmpeg (is )?not found|ffprobe and ffmpeg not found/i;

/**
 * Maps a failed run to an `AppError`: a source that is gone or refused is final, a network
 * hiccup may pass on another delivery, a missing tool may be fixed by an operator.
 * `errors` are yt-dlp's `ERROR:` lines; the last one is the verdict.
 */
export function classifyFailure(
  errors: string[],
  exit: { code: number | null; stderrTail: string },
): AppError {
  const last = errors.at(-1);
  const reason = last
    ? errorReason(last)
    : lastLine(exit.stderrTail) || `yt-dlp exited with code ${exit.code}`;
  const text = errors.join('\n') || exit.stderrTail;
  const details = { exit_code: exit.code };
  if (TOOL_MISSING.test(text)) {
    return new AppError('tool.missing', `a tool yt-dlp needs is missing: ${reason}`, {
      retryable: true,
      details,
    });
  }
  if (UNAVAILABLE.some((re) => re.test(text))) {
    return new AppError('download.unavailable', `the media cannot be downloaded: ${reason}`, {
      status: 422,
      details,
    });
  }
  if (NETWORK.some((re) => re.test(text))) {
    return new AppError('download.network', `the source did not answer properly: ${reason}`, {
      status: 502,
      retryable: true,
      details,
    });
  }
  return new AppError('download.failed', `yt-dlp failed: ${reason}`, { status: 502, details });
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
