import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError, runProcess, type Config, type RunResult } from '@media-jobs/libs';
import {
  encodeArgs,
  measureArgs,
  measurePcmArgs,
  parseEbur128Summary,
  parseProbe,
  parseProgressLine,
  probeArgs,
  probeVerdict,
  type EncodeSpec,
  type Loudness,
  type MediaInfo,
  type PcmTap,
} from './ffmpeg.js';

export type ToolPaths = Pick<Config, 'ffmpegPath' | 'ffprobePath'>;

/** Called with the share (0-1) of the input processed so far. */
export type OnShare = (share: number) => void;

const INVALID_MEDIA = /Invalid data found|moov atom not found|could not find codec parameters|Error while decoding|does not contain any stream/i;

function aborted(): AppError {
  return new AppError('normalize.aborted', 'the run was stopped', { retryable: true });
}

/** Turns ffmpeg's exit into an error: bad input is final; a killed or starved process may pass on retry. */
function toolFailure(tool: string, result: RunResult): AppError {
  const verdict = probeVerdict(result.stderr);
  if (INVALID_MEDIA.test(result.stderr)) {
    return new AppError('normalize.invalid_media', `the file cannot be decoded as audio: ${verdict}`);
  }
  const transient = result.signal !== null || /No space left|Cannot allocate memory|Resource temporarily unavailable/i.test(result.stderr);
  return new AppError('normalize.ffmpeg_failed', `${tool} failed (${result.signal ?? `exit ${result.code}`}): ${verdict}`, {
    retryable: transient,
  });
}

/** The file's first audio stream; a file ffprobe cannot read, or one without audio, is a final error. */
export async function probeMedia(tools: ToolPaths, path: string, signal: AbortSignal): Promise<MediaInfo> {
  const lines: string[] = [];
  const result = await runProcess(tools.ffprobePath, probeArgs(path), { signal, timeoutMs: 60_000, onStdoutLine: (l) => lines.push(l) });
  if (result.aborted) throw aborted();
  if (result.code !== 0) {
    throw new AppError('normalize.invalid_media', `the file is not audio or video that can be read: ${probeVerdict(result.stderr)}`);
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
  duration: number | null,
  signal: AbortSignal,
  onShare: OnShare,
): Promise<Loudness> {
  const result = await runProcess(tools.ffmpegPath, measureArgs(input, filters), {
    signal,
    onStdoutLine: progressHandler(duration, onShare),
    stderrTail: 4000,
  });
  if (result.aborted) throw aborted();
  if (result.code !== 0) throw toolFailure('ffmpeg', result);
  const loudness = parseEbur128Summary(result.stderr);
  if (!loudness) throw new AppError('normalize.measure_failed', 'ffmpeg did not report a loudness measurement', { retryable: true });
  return loudness;
}

export interface EncodeOptions {
  duration: number | null;
  signal: AbortSignal;
  onShare: OnShare;
  workDir: string;
  /** Sample rate of the signal after the pre-gain filters (the measured input), when measuring. */
  measureAtRate?: number;
}

/** Loudness of the signal after the pre-gain filters and of the exact signal fed to the encoder. */
export interface Measured {
  input: Loudness;
  output: Loudness;
}

/** Encodes the output; with `measureAtRate`, also measures input and output true loudness on the way. */
export async function encode(tools: ToolPaths, spec: Omit<EncodeSpec, 'taps'>, options: EncodeOptions): Promise<Measured | null> {
  if (options.measureAtRate !== undefined) return encodeAndMeasure(tools, spec, { ...options, measureAtRate: options.measureAtRate });
  const result = await runProcess(tools.ffmpegPath, encodeArgs(spec), {
    signal: options.signal,
    onStdoutLine: progressHandler(options.duration, options.onShare),
  });
  if (result.aborted) throw aborted();
  if (result.code !== 0) throw toolFailure('ffmpeg', result);
  return null;
}

async function makeFifo(path: string, signal: AbortSignal): Promise<void> {
  const made = await runProcess('mkfifo', ['-m', '600', path], { signal, timeoutMs: 10_000 });
  if (made.aborted) throw aborted();
  if (made.code !== 0) throw new AppError('normalize.fifo_failed', `cannot create a FIFO: ${made.stderr.trim()}`, { retryable: true });
}

/**
 * A true-peak scan costs as much as the decode. Instead of passes before and after the
 * encode, the encoder's ffmpeg writes the signal before the gain and the signal it encodes
 * into two FIFOs, and two more ffmpeg runs measure them on the other core while the encode
 * runs, so the input's true peak and the verification of the output add little wall time.
 */
async function encodeAndMeasure(tools: ToolPaths, spec: Omit<EncodeSpec, 'taps'>, options: EncodeOptions & { measureAtRate: number }): Promise<Measured> {
  const { channels, sampleRate } = spec.plan;
  const taps = {
    input: { path: join(options.workDir, 'input.f32'), sampleRate: options.measureAtRate, channels },
    output: { path: join(options.workDir, 'output.f32'), sampleRate, channels },
  };
  await makeFifo(taps.input.path, options.signal);
  await makeFifo(taps.output.path, options.signal);
  // Each side is stopped when another fails, or a FIFO open would wait forever.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  options.signal.addEventListener('abort', onAbort, { once: true });
  const watch = (r: RunResult) => {
    if (r.code !== 0) stop.abort();
    return r;
  };
  try {
    // Blocked in open() on a FIFO, ffmpeg ignores SIGTERM: do not wait long for it.
    const meter = (tap: PcmTap) =>
      runProcess(tools.ffmpegPath, measurePcmArgs(tap.path, tap.sampleRate, tap.channels), { signal: stop.signal, stderrTail: 4000, killGraceMs: 500 }).then(watch);
    const encoder = runProcess(tools.ffmpegPath, encodeArgs({ ...spec, taps }), {
      signal: stop.signal,
      onStdoutLine: progressHandler(options.duration, options.onShare),
      killGraceMs: 500,
    }).then(watch);
    const [enc, inp, out] = await Promise.all([encoder, meter(taps.input), meter(taps.output)]);
    if (options.signal.aborted) throw aborted();
    // The run that failed on its own is the one to report; the others were stopped because of it.
    const failed = [enc, inp, out].find((r) => r.code !== 0 && !r.aborted) ?? [enc, inp, out].find((r) => r.code !== 0);
    if (failed) throw toolFailure('ffmpeg', failed);
    const input = parseEbur128Summary(inp.stderr);
    const output = parseEbur128Summary(out.stderr);
    if (!input || !output) throw new AppError('normalize.measure_failed', 'ffmpeg did not report the loudness', { retryable: true });
    return { input, output };
  } finally {
    options.signal.removeEventListener('abort', onAbort);
    await rm(taps.input.path, { force: true });
    await rm(taps.output.path, { force: true });
  }
}
