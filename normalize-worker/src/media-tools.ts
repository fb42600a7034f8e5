import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError, runProcess, type Config, type RunResult } from '@media-jobs/libs';
import {
  encodeArgs,
  measureArgs,
  measureAfter,
  meterArgs,
  parseNamedSummary,
  trialArgs,
  parseEbur128Frame,
  parseEbur128Summary,
  parseProbe,
  parseProgressLine,
  probeArgs,
  probeVerdict,
  parseTruePeak,
  truePeakArgs,
  type EbuFrame,
  type EncodeSpec,
  type Loudness,
  type MediaInfo,
  type MeterTap,
  type PeakMode,
} from './ffmpeg.js';

export type ToolPaths = Pick<Config, 'ffmpegPath' | 'ffprobePath'>;

/** Called with the share (0-1) of the input processed so far. */
export type OnShare = (share: number) => void;

const INVALID_MEDIA =
  /Invalid data found|moov atom not found|could not find codec parameters|Error while decoding|does not contain any stream/i;

function aborted(): AppError {
  return new AppError('normalize.aborted', 'the run was stopped', { retryable: true });
}

/** Turns ffmpeg's exit into an error: bad input is final; a killed or starved process may pass on retry. */
function toolFailure(tool: string, result: RunResult): AppError {
  // ffmpeg ends with "Conversion failed!"; the reason is the line before.
  const verdict = probeVerdict(result.stderr.replace(/^Conversion failed!\s*$/m, ''));
  if (INVALID_MEDIA.test(result.stderr)) {
    return new AppError('normalize.invalid_media', `the file cannot be decoded as audio: ${verdict}`);
  }
  const transient =
    result.signal !== null ||
    /No space left|Cannot allocate memory|Resource temporarily unavailable/i.test(result.stderr);
  return new AppError(
    'normalize.ffmpeg_failed',
    `${tool} failed (${result.signal ?? `exit ${result.code}`}): ${verdict}`,
    {
      retryable: transient,
    },
  );
}

/** The file's first audio stream; a file ffprobe cannot read, or one without audio, is a final error. */
export async function probeMedia(tools: ToolPaths, path: string, signal: AbortSignal): Promise<MediaInfo> {
  const lines: string[] = [];
  const result = await runProcess(tools.ffprobePath, probeArgs(path), {
    signal,
    timeoutMs: 60_000,
    onStdoutLine: (l) => lines.push(l),
  });
  if (result.aborted) throw aborted();
  if (result.code !== 0) {
    throw new AppError(
      'normalize.invalid_media',
      `the file is not audio or video that can be read: ${probeVerdict(result.stderr)}`,
    );
  }
  const info = parseProbe(lines.join('\n'));
  if (!info) throw new AppError('normalize.no_audio', 'the file has no audio stream');
  return info;
}

function progressHandler(duration: number | null, onShare: OnShare): (line: string) => void {
  return (line) => {
    const seconds = parseProgressLine(line);
    if (seconds !== null && duration) onShare(Math.min(1, seconds / duration));
  };
}

/** Decodes the input through `filters` and returns its EBU R128 loudness and true peak. */
export async function measureLoudness(
  tools: ToolPaths,
  input: string,
  filters: string[],
  options: {
    peak: PeakMode;
    duration: number | null;
    signal: AbortSignal;
    onShare?: OnShare;
    /** Given: called with the running reading every 100 ms of audio. */
    onFrame?: (frame: EbuFrame) => void;
  },
): Promise<Loudness> {
  const { duration, signal, onShare = () => undefined, onFrame } = options;
  const args = measureArgs(input, filters, options.peak, onFrame !== undefined);
  const result = await runProcess(tools.ffmpegPath, args, {
    signal,
    onStdoutLine: progressHandler(duration, onShare),
    ...(onFrame && {
      onStderrLine: (line: string) => {
        const frame = parseEbur128Frame(line);
        if (frame) onFrame(frame);
      },
    }),
    stderrTail: 4000,
  });
  if (result.aborted) throw aborted();
  if (result.code !== 0) throw toolFailure('ffmpeg', result);
  const loudness = parseEbur128Summary(result.stderr);
  if (!loudness)
    throw new AppError('normalize.measure_failed', 'ffmpeg did not report a loudness measurement', {
      retryable: true,
    });
  return loudness;
}

/** The true peak (dBTP) of the input after `filters`; null for silence. */
export async function measureTruePeak(
  tools: ToolPaths,
  input: string,
  filters: string[],
  sampleRate: number,
  signal: AbortSignal,
): Promise<number | null> {
  // Nothing waits on it until the encode ends: it takes what CPU the other passes leave.
  const result = await runProcess(tools.ffmpegPath, truePeakArgs(input, filters, sampleRate), {
    signal,
    stderrTail: 4000,
    nice: 10,
  });
  if (result.aborted) throw aborted();
  if (result.code !== 0) throw toolFailure('ffmpeg', result);
  return parseTruePeak(result.stderr);
}

/**
 * The loudness of the input after `filters`, then each gain in `gains`, then the limiter at
 * `limitDb`: one decode, one branch per gain.
 */
export async function trialLimiter(
  tools: ToolPaths,
  input: string,
  filters: string[],
  gains: number[],
  limitDb: number,
  options: { duration: number | null; signal: AbortSignal; onShare?: OnShare },
): Promise<{ gain: number; lufs: number }[]> {
  const result = await runProcess(tools.ffmpegPath, trialArgs(input, filters, gains, limitDb), {
    signal: options.signal,
    onStdoutLine: progressHandler(options.duration, options.onShare ?? (() => undefined)),
    stderrTail: 8000,
  });
  if (result.aborted) throw aborted();
  if (result.code !== 0) throw toolFailure('ffmpeg', result);
  return gains.map((gain, i) => {
    const l = parseNamedSummary(result.stderr, `trial${i}`);
    if (!l)
      throw new AppError('normalize.measure_failed', 'ffmpeg did not report the limiter trial', {
        retryable: true,
      });
    return { gain, lufs: l.integrated };
  });
}

export interface EncodeOptions {
  duration: number | null;
  signal: AbortSignal;
  onShare: OnShare;
  workDir: string;
  /** Measure the exact signal fed to the encoder too. */
  measure: boolean;
}

/** Encodes the output; with `measure`, also returns the loudness and true peak of what was encoded. */
export async function encode(
  tools: ToolPaths,
  spec: Omit<EncodeSpec, 'tap'>,
  options: EncodeOptions,
): Promise<Loudness | null> {
  if (options.measure) return encodeAndMeasure(tools, spec, options);
  const result = await runProcess(tools.ffmpegPath, encodeArgs(spec), {
    signal: options.signal,
    onStdoutLine: progressHandler(options.duration, options.onShare),
  });
  if (result.aborted) throw aborted();
  if (result.code !== 0) throw toolFailure('ffmpeg', result);
  return null;
}

function meterReading(stderr: string): Loudness {
  const summary = parseEbur128Summary(stderr);
  if (!summary)
    throw new AppError('normalize.measure_failed', 'ffmpeg did not report the output loudness', {
      retryable: true,
    });
  return { ...summary, truePeak: parseTruePeak(stderr) };
}

async function makeFifo(path: string, signal: AbortSignal): Promise<void> {
  const made = await runProcess('mkfifo', ['-m', '600', path], { signal, timeoutMs: 10_000 });
  if (made.aborted) throw aborted();
  if (made.code !== 0)
    throw new AppError('normalize.fifo_failed', `cannot create a FIFO: ${made.stderr.trim()}`, {
      retryable: true,
    });
}

/**
 * Verifying the output costs a decode and a true-peak scan of the whole file. Instead of a
 * pass after the encode, the encoder's ffmpeg also sends the encoded stream into a FIFO (its
 * `tee` muxer), and a second ffmpeg decodes and measures it on the other core while the
 * encode runs: what is measured is the encoded audio itself, at little wall time.
 */
async function encodeAndMeasure(
  tools: ToolPaths,
  spec: Omit<EncodeSpec, 'tap'>,
  options: EncodeOptions,
): Promise<Loudness> {
  if (measureAfter(spec.plan.format)) {
    await encode(tools, spec, { ...options, measure: false });
    const met = await runProcess(tools.ffmpegPath, meterArgs({ path: spec.output }, spec.plan), {
      signal: options.signal,
      stderrTail: 4000,
    });
    if (met.aborted) throw aborted();
    if (met.code !== 0) throw toolFailure('ffmpeg', met);
    return meterReading(met.stderr);
  }
  const tap: MeterTap = { path: join(options.workDir, 'encoded.tap') };
  await makeFifo(tap.path, options.signal);
  // Each side is stopped when the other fails, or a FIFO open would wait forever.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  options.signal.addEventListener('abort', onAbort, { once: true });
  const watch = (r: RunResult) => {
    if (r.code !== 0) stop.abort();
    return r;
  };
  try {
    // Blocked in open() on a FIFO, ffmpeg ignores SIGTERM: do not wait long for it.
    const meter = runProcess(tools.ffmpegPath, meterArgs(tap, spec.plan), {
      signal: stop.signal,
      stderrTail: 4000,
      killGraceMs: 500,
    }).then(watch);
    const encoder = runProcess(tools.ffmpegPath, encodeArgs({ ...spec, tap }), {
      signal: stop.signal,
      onStdoutLine: progressHandler(options.duration, options.onShare),
      killGraceMs: 500,
    }).then(watch);
    const [enc, met] = await Promise.all([encoder, meter]);
    if (options.signal.aborted) throw aborted();
    // The run that failed on its own is the one to report; the other was stopped because of it.
    const failed = [enc, met].find((r) => r.code !== 0 && !r.aborted) ?? [enc, met].find((r) => r.code !== 0);
    if (failed) throw toolFailure('ffmpeg', failed);
    return meterReading(met.stderr);
  } finally {
    options.signal.removeEventListener('abort', onAbort);
    await rm(tap.path, { force: true });
  }
}
