import type { Operation, OutputFormat } from '@media-jobs/libs';

/**
 * Pure argument builders and output parsers for ffprobe and ffmpeg. Nothing here spawns a
 * process, so every decision (filters, rates, gain, codec) is unit-tested on its own.
 */

export interface MediaInfo {
  /** Seconds, or null when the container does not say. */
  duration: number | null;
  formatName: string;
  codec: string;
  sampleRate: number;
  channels: number;
  hasVideo: boolean;
  /** Size of the file in bytes as ffprobe read it; absent when it does not say. */
  sizeBytes?: number;
}

export interface Loudness {
  /** Integrated loudness, LUFS (-70 or lower: nothing above the gate, i.e. silence). */
  integrated: number;
  /** Loudness range, LU. */
  lra: number;
  /** True peak, dBTP; null for digital silence (-inf) or when not measured. */
  truePeak: number | null;
  /** Sample peak, dBFS; null for digital silence (-inf) or when not measured. */
  samplePeak?: number | null;
}

export interface OutputPlan {
  format: OutputFormat;
  ext: string;
  codec: string;
  sampleRate: number;
  channels: number;
  codecArgs: string[];
}

/** Gain decided from one measurement: a single linear gain, plus a limiter only when peaks need it. */
export interface GainPlan {
  gainDb: number;
  /** Sample-peak limit of the limiter in dBFS, or null when the gain keeps peaks under the ceiling. */
  limitDb: number | null;
  /** The gain the target needs is more than `MAX_GAIN_DB`: the output aims at input + `MAX_GAIN_DB` instead. */
  capped: boolean;
}

/**
 * The most `normalize_volume` amplifies. Near-silent input (a -60 LUFS room tone, a muted
 * track's hiss) would need 40+ dB, which makes noise, not programme; such input is raised by
 * this much and no more, and the record says `gain_capped: true`.
 */
export const MAX_GAIN_DB = 30;

export function probeArgs(path: string): string[] {
  return ['-v', 'error', '-print_format', 'json', '-show_streams', '-show_format', path];
}

interface ProbeJson {
  streams?: {
    codec_type?: string;
    codec_name?: string;
    sample_rate?: string;
    channels?: number;
    duration?: string;
  }[];
  format?: { format_name?: string; duration?: string; size?: string };
}

/** The first audio stream of ffprobe's JSON, or null when the file has none. */
export function parseProbe(stdout: string): MediaInfo | null {
  const json = JSON.parse(stdout) as ProbeJson;
  const streams = json.streams ?? [];
  const audio = streams.find((s) => s.codec_type === 'audio');
  if (!audio) return null;
  const duration = Number(json.format?.duration ?? audio.duration);
  const size = Number(json.format?.size);
  return {
    duration: Number.isFinite(duration) && duration > 0 ? duration : null,
    formatName: json.format?.format_name ?? 'unknown',
    codec: audio.codec_name ?? 'unknown',
    sampleRate: Number(audio.sample_rate) || 0,
    channels: audio.channels ?? 0,
    hasVideo: streams.some((s) => s.codec_type === 'video'),
    ...(Number.isSafeInteger(size) && size >= 0 && { sizeBytes: size }),
  };
}

/**
 * The output format a probed file is, from its container and codec as ffprobe names them,
 * or null when it is none of ours: the result says what the file holds, not what was asked.
 */
export function probedFormat(info: Pick<MediaInfo, 'formatName' | 'codec'>): OutputFormat | null {
  const containers = info.formatName.split(',');
  if (containers.includes('ogg') && info.codec === 'opus') return 'opus';
  if (containers.includes('mp3') && info.codec === 'mp3') return 'mp3';
  if (containers.includes('mp4') && info.codec === 'aac') return 'm4a';
  if (containers.includes('wav') && info.codec.startsWith('pcm_')) return 'wav';
  if (containers.includes('flac') && info.codec === 'flac') return 'flac';
  return null;
}

/** The last line of ffprobe's complaint, e.g. "Invalid data found when processing input". */
export function probeVerdict(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const last = lines.at(-1) ?? 'ffprobe could not read the file';
  // ffprobe prefixes the path (ours, not the user's); the reason after it is what matters.
  return last.replace(/^.*?:\s(?=[A-Z])/, '');
}

const LOSSY_RATES = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];
const OPUS_RATES = [8000, 12000, 16000, 24000, 48000];

/** Keep the input's rate where the format allows it; never above 48 kHz for lossy formats. */
export function outputSampleRate(format: OutputFormat, inputRate: number, to16k: boolean): number {
  if (to16k) return 16_000;
  if (format === 'opus') return OPUS_RATES.includes(inputRate) ? inputRate : 48_000;
  if (format === 'wav' || format === 'flac') return inputRate || 48_000;
  if (LOSSY_RATES.includes(inputRate)) return inputRate;
  // 88.2 and 176.4 kHz masters come from the 44.1 kHz family.
  return inputRate > 0 && inputRate % 44_100 === 0 ? 44_100 : 48_000;
}

/** Encoder arguments per format; shared with the benchmark so every method uses the same encoder. */
export function codecArgs(
  format: OutputFormat,
  channels: number,
): { codec: string; ext: string; args: string[] } {
  const stereo = channels > 1;
  switch (format) {
    case 'opus':
      return { codec: 'opus', ext: 'opus', args: ['-c:a', 'libopus', '-b:a', stereo ? '128k' : '64k'] };
    case 'mp3':
      return { codec: 'mp3', ext: 'mp3', args: ['-c:a', 'libmp3lame', '-q:a', '2'] };
    case 'm4a':
      return {
        codec: 'aac',
        ext: 'm4a',
        args: ['-c:a', 'aac', '-b:a', stereo ? '192k' : '96k', '-movflags', '+faststart'],
      };
    case 'wav':
      return { codec: 'pcm_s16le', ext: 'wav', args: ['-c:a', 'pcm_s16le'] };
    case 'flac':
      return { codec: 'flac', ext: 'flac', args: ['-c:a', 'flac'] };
  }
}

export function planOutput(
  format: OutputFormat,
  input: Pick<MediaInfo, 'sampleRate' | 'channels'>,
  ops: readonly Operation[],
): OutputPlan {
  const sampleRate = outputSampleRate(format, input.sampleRate, ops.includes('sample_rate_16k'));
  // mp3 and plain opus carry at most two channels; lossless formats keep them all.
  const lossless = format === 'wav' || format === 'flac';
  const inputChannels = input.channels > 0 ? input.channels : 2; // unknown: assume stereo
  const channels = ops.includes('convert_to_mono')
    ? 1
    : lossless
      ? inputChannels
      : Math.min(2, inputChannels);
  const { codec, ext, args } = codecArgs(format, channels);
  return { format, ext, codec, sampleRate, channels, codecArgs: args };
}

export const HIGHPASS_HZ = 80;
/** Two 2-pole sections: 24 dB/octave, so rumble at 30 Hz drops by about 30 dB and speech stays intact. */
const HIGHPASS = `highpass=f=${HIGHPASS_HZ}:poles=2,highpass=f=${HIGHPASS_HZ}:poles=2`;
/** FFT denoiser that tracks the noise floor, starting from a floor typical of hiss in recordings. */
const DENOISE = 'afftdn=nr=20:nf=-40:tn=1';

/**
 * Filters before the gain, in the order that is cheapest and measures right: downmix first
 * (later filters run on fewer channels), then rumble and noise removal, then a downsample
 * to 16 kHz (which changes loudness, so it comes before the measurement).
 */
export function preGainFilters(ops: readonly Operation[], plan: OutputPlan, inputChannels: number): string[] {
  const filters: string[] = [];
  if (plan.channels < inputChannels)
    filters.push(`aformat=channel_layouts=${plan.channels === 1 ? 'mono' : 'stereo'}`);
  if (ops.includes('highpass_filter')) filters.push(HIGHPASS);
  if (ops.includes('remove_noise')) filters.push(DENOISE);
  if (ops.includes('sample_rate_16k')) filters.push('aresample=16000');
  return filters;
}

/**
 * Lossy encoders raise true peaks (measured: Opus about 1.1 dB on limited, dense audio);
 * keep that much headroom below the ceiling in the signal fed to the encoder.
 */
export function peakMargin(format: OutputFormat): number {
  if (format === 'wav' || format === 'flac') return 0.1;
  return format === 'opus' ? 1.3 : 1;
}

/** Inter-sample peaks rise above sample peaks; a sample-peak limit this far down keeps true peaks under it. */
export const TRUE_PEAK_OVER_SAMPLE_DB = 1;

/**
 * One linear gain to the target. When that gain would push the true peak over the ceiling
 * (less the codec's margin), a look-ahead limiter catches the peaks instead of lowering the
 * gain, so quiet inputs with sharp transients still reach the target loudness.
 */
export function planGain(
  measured: Loudness,
  targetLufs: number,
  ceilingDb: number,
  format: OutputFormat,
): GainPlan {
  // The gain is planned from the quick pass's sample peak (the true-peak scan of the input
  // runs alongside, for the record); the output measurement catches what the estimate misses.
  const peak =
    measured.truePeak ??
    (measured.samplePeak == null ? null : measured.samplePeak + TRUE_PEAK_OVER_SAMPLE_DB);
  if (measured.integrated <= -70 || peak === null) return { gainDb: 0, limitDb: null, capped: false };
  const wanted = round2(targetLufs - measured.integrated);
  const capped = wanted > MAX_GAIN_DB;
  const gainDb = capped ? MAX_GAIN_DB : wanted;
  const allowed = ceilingDb - peakMargin(format);
  return { gainDb, limitDb: peak + gainDb > allowed ? limiterLevel(ceilingDb, format) : null, capped };
}

/** The limiter's sample-peak limit that keeps true peaks, after encoding, under the ceiling. */
export function limiterLevel(ceilingDb: number, format: OutputFormat): number {
  return round2(ceilingDb - peakMargin(format) - TRUE_PEAK_OVER_SAMPLE_DB);
}

/** The loudness the output aims at: the target, or the input raised by `MAX_GAIN_DB` when capped. */
export function aimLufs(measured: Loudness, targetLufs: number): number {
  if (measured.integrated <= -70) return targetLufs;
  return Math.min(targetLufs, round2(measured.integrated + MAX_GAIN_DB));
}

export function gainFilters(plan: Pick<GainPlan, 'gainDb' | 'limitDb'>): string[] {
  const filters = [`volume=${plan.gainDb.toFixed(2)}dB`];
  if (plan.limitDb !== null) {
    const limit = Math.max(0.0625, Math.min(1, 10 ** (plan.limitDb / 20)));
    // level=false: no automatic make-up gain; latency=true: no added delay at the start.
    filters.push(`alimiter=limit=${limit.toFixed(5)}:attack=5:release=50:level=false:latency=true`);
  }
  return filters;
}

/** `sample` costs about half of `true`, which oversamples every channel to 192 kHz. */
export type PeakMode = 'none' | 'sample' | 'true';

/** `framelog=info` prints a running reading every 100 ms of audio (`parseEbur128Frame`); `verbose` hides it. */
const ebur128 = (peak: PeakMode, frames = false) =>
  `ebur128=peak=${peak}:framelog=${frames ? 'info' : 'verbose'}`;

/**
 * A measuring pass: decode, apply `filters`, measure loudness and peak, write nothing.
 * ebur128 works at the input's rate (loudnorm resamples the whole file to 192 kHz), which
 * makes this pass many times cheaper than loudnorm's. With `frames`, it also logs its running
 * reading every 100 ms of audio.
 */
export function measureArgs(input: string, filters: string[], peak: PeakMode, frames = false): string[] {
  const graph = [...filters, ebur128(peak, frames)].join(',');
  return [...baseArgs(input), '-filter_complex', `[0:a:0]${graph}[m]`, '-map', '[m]', '-f', 'null', '-'];
}

/** Gains a limiter trial tries at once, above the planned one: its loudness loss is read off them. */
export const TRIAL_STEPS_DB = [0, 2];

/**
 * A limiter trial: the input after `filters`, split into one branch per gain, each through the
 * same limiter and its own `ebur128` (named `trial<i>`), nothing written. A limiter lowers
 * loudness by an amount no formula gives; measured at a few gains, the gain that lands on the
 * target is interpolated before the encode, so the encode need not be repeated.
 */
export function trialArgs(input: string, filters: string[], gains: number[], limitDb: number): string[] {
  const labels = gains.map((_, i) => `t${i}`);
  const head = `[0:a:0]${chain([...filters, `asplit=${gains.length}`])}${labels.map((l) => `[${l}]`).join('')}`;
  const branches = gains.map(
    (g, i) =>
      `[t${i}]${gainFilters({ gainDb: round2(g), limitDb }).join(',')},ebur128@trial${i}=peak=none:framelog=verbose[o${i}]`,
  );
  const maps = gains.flatMap((_, i) => ['-map', `[o${i}]`, '-f', 'null', '-']);
  return [...baseArgs(input), '-filter_complex', [head, ...branches].join(';'), ...maps];
}

/** The summary of the (last) `ebur128@<name>` instance in a run's log. */
export function parseNamedSummary(stderr: string, name: string): Loudness | null {
  // With several outputs ffmpeg configures the graph twice; the first instance, freed unfed,
  // prints a silent summary too: the last one is the measurement.
  const at = stderr.lastIndexOf(`[ebur128@${name} @`);
  if (at < 0) return null;
  const next = stderr.indexOf('\n[', at + 1);
  return parseEbur128Summary(stderr.slice(at, next < 0 ? undefined : next));
}

/**
 * The gain whose limited output lands on `aim`, from a trial's (gain, loudness) points
 * (gains ascending): interpolated where the points bracket it, else extrapolated along the
 * last slope (at least 0.2, as loudness always rises with gain), at most 6 dB past the last point.
 */
/** How much louder the limited output gets per dB of gain, from a trial's points (0.2 to 1). */
export function trialSlope(points: { gain: number; lufs: number }[]): number {
  const [first, last] = [points[0], points.at(-1)];
  if (!first || !last || last.gain === first.gain) return 1;
  return Math.min(1, Math.max(0.2, (last.lufs - first.lufs) / (last.gain - first.gain)));
}

export function interpolateGain(points: { gain: number; lufs: number }[], aim: number): number {
  const first = points[0];
  if (!first) throw new Error('no trial points');
  if (first.lufs >= aim) return round2(first.gain - (first.lufs - aim));
  for (let i = 1; i < points.length; i += 1) {
    const [a, b] = [
      points[i - 1] as { gain: number; lufs: number },
      points[i] as { gain: number; lufs: number },
    ];
    if (b.lufs >= aim) {
      const slope = Math.max(0.05, (b.lufs - a.lufs) / (b.gain - a.gain));
      return round2(a.gain + (aim - a.lufs) / slope);
    }
  }
  const last = points.at(-1) as { gain: number; lufs: number };
  const prev = points.at(-2) ?? first;
  const slope = last === prev ? 1 : Math.max(0.2, (last.lufs - prev.lufs) / (last.gain - prev.gain));
  return round2(last.gain + Math.min(6, (aim - last.lufs) / slope));
}

/**
 * Where the encoder's ffmpeg also writes the encoded stream (its `tee` muxer), for a second
 * ffmpeg to decode and measure while the encode runs: the record's output figures are those
 * of the encoded audio itself, codec effects included.
 */
export interface MeterTap {
  path: string;
}

/**
 * AAC decoded from an ADTS copy of the stream measures up to 0.7 LU off the same stream in
 * its MP4 (priming and edit list), so m4a is measured on the written file, after the encode.
 */
export const measureAfter = (format: OutputFormat): boolean => format === 'm4a';

/** The container the encoded stream takes on its way to the meter (a FIFO: nothing seekable). */
function meterMuxer(format: OutputFormat): string {
  switch (format) {
    case 'opus':
      return 'ogg';
    case 'mp3':
      return 'mp3';
    case 'm4a':
      return 'adts';
    case 'wav':
      return 's16le';
    case 'flac':
      return 'flac';
  }
}

/** `tee` slave names: its separators and option brackets escaped. */
const teeEscape = (path: string): string => path.replace(/[\\|[\]]/g, (c) => `\\${c}`);

export interface EncodeSpec {
  input: string;
  output: string;
  plan: OutputPlan;
  /** Filters before the gain. */
  pre: string[];
  /** The gain and limiter. */
  gain: string[];
  /** Also send the encoded stream here, for a parallel measurement of the output. */
  tap?: MeterTap;
}

const chain = (filters: string[]): string => (filters.length > 0 ? filters.join(',') : 'anull');

/** `-movflags` goes to the file's own muxer when a `tee` sends the stream to two places. */
function splitMuxerOptions(args: string[]): { codec: string[]; muxer: string[] } {
  const at = args.indexOf('-movflags');
  if (at < 0) return { codec: args, muxer: [] };
  return {
    codec: [...args.slice(0, at), ...args.slice(at + 2)],
    muxer: [`movflags=${args[at + 1] ?? ''}`],
  };
}

export function encodeArgs(spec: EncodeSpec): string[] {
  const { plan, tap } = spec;
  const filters = chain([...spec.pre, ...spec.gain, `aresample=${plan.sampleRate}`]);
  const args = [
    ...baseArgs(spec.input),
    '-filter_complex',
    `[0:a:0]${filters}[out]`,
    '-map',
    '[out]',
    '-ac',
    String(plan.channels),
    '-ar',
    String(plan.sampleRate),
  ];
  if (!tap) return [...args, ...plan.codecArgs, '-f', muxer(plan.format), spec.output];
  const { codec, muxer: options } = splitMuxerOptions(plan.codecArgs);
  const file = `[${[`f=${muxer(plan.format)}`, ...options].join(':')}]${teeEscape(spec.output)}`;
  const meter = `[f=${meterMuxer(plan.format)}:onfail=abort]${teeEscape(tap.path)}`;
  return [...args, ...codec, '-f', 'tee', `${file}|${meter}`];
}

/**
 * True peak the BS.1770 way, 4x oversampled (with the resampler ebur128 itself uses), but
 * read by volumedetect, which costs a fraction of ebur128's own true-peak meter. volumedetect
 * works on 16-bit samples, so the signal is lowered first: peaks up to +12 dBTP fit.
 */
export const TRUE_PEAK_HEADROOM_DB = 12;

function truePeakChain(sampleRate: number): string {
  const oversampled = Math.max(192_000, 4 * sampleRate);
  return `aresample=${oversampled}:filter_size=32,volume=-${TRUE_PEAK_HEADROOM_DB}dB,volumedetect`;
}

/** The true peak of the input after `filters` (at `sampleRate`), read with `parseTruePeak`. */
export function truePeakArgs(input: string, filters: string[], sampleRate: number): string[] {
  const graph = [...filters, truePeakChain(sampleRate)].join(',');
  return [...baseArgs(input), '-filter_complex', `[0:a:0]${graph}[p]`, '-map', '[p]', '-f', 'null', '-'];
}

/**
 * Decodes the encoded stream `encodeArgs`'s tap sends and measures it: loudness with ebur128,
 * true peak as above (at the output's rate).
 */
export function meterArgs(
  tap: MeterTap,
  plan: Pick<OutputPlan, 'format' | 'sampleRate' | 'channels'>,
): string[] {
  const raw = plan.format === 'wav' ? ['-ar', String(plan.sampleRate), '-ac', String(plan.channels)] : [];
  // m4a is measured on the written file after the encode (see `measureAfter`).
  const input =
    plan.format === 'm4a' ? ['-i', tap.path] : ['-f', meterMuxer(plan.format), ...raw, '-i', tap.path];
  const graph = `[0:a:0]asplit=2[l][p];[l]${ebur128('none')}[lo];[p]${truePeakChain(plan.sampleRate)}[po]`;
  return [
    ...['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'info', ...input],
    ...['-filter_complex', graph, '-map', '[lo]', '-f', 'null', '-', '-map', '[po]', '-f', 'null', '-'],
  ];
}

/** The true peak from `truePeakChain`'s volumedetect line; null for silence. */
export function parseTruePeak(stderr: string): number | null {
  const m = /max_volume:\s+(-?[\d.]+|-?inf) dB/.exec(stderr)?.[1];
  if (m === undefined || /inf/.test(m) || Number(m) <= -90) return null;
  return Math.round((Number(m) + TRUE_PEAK_HEADROOM_DB) * 10) / 10;
}

function muxer(format: OutputFormat): string {
  return format === 'opus' ? 'ogg' : format === 'm4a' ? 'ipod' : format;
}

/** Machine-readable progress on stdout (`key=value` lines); the log stays on stderr for the summary. */
function baseArgs(input: string): string[] {
  return [
    '-hide_banner',
    '-nostdin',
    '-nostats',
    '-loglevel',
    'info',
    '-y',
    '-progress',
    'pipe:1',
    '-i',
    input,
  ];
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/** ebur128's running reading so far, from one of its `framelog=info` lines. */
export interface EbuFrame {
  /** Position in the input, seconds. */
  seconds: number;
  /** Integrated loudness of the input so far (-70 or lower: nothing above the gate yet). */
  integrated: number;
  /** The highest sample peak so far over all channels, dBFS; null when not measured or silent. */
  samplePeak: number | null;
}

const FRAME_LINE =
  /\bt:\s*([\d.]+)\s.*?\bI:\s*(-?[\d.]+|-?inf|nan)\s+LUFS(?:.*?\bSPK:((?:\s+(?:-?[\d.]+|-?inf))+)\s+dBFS)?/;

/** One running reading of an `ebur128` with `framelog=info`, or null for any other line. */
export function parseEbur128Frame(line: string): EbuFrame | null {
  const m = FRAME_LINE.exec(line);
  if (!m) return null;
  const integrated = /inf|nan/.test(m[2] as string) ? -70 : Number(m[2]);
  const peaks = (m[3] ?? '')
    .trim()
    .split(/\s+/)
    .filter((p) => p !== '' && !/inf/.test(p))
    .map(Number);
  return { seconds: Number(m[1]), integrated, samplePeak: peaks.length > 0 ? Math.max(...peaks) : null };
}

/** The `Summary:` block that ebur128 prints at the end of a run. */
export function parseEbur128Summary(stderr: string): Loudness | null {
  const at = stderr.lastIndexOf('Summary:');
  if (at < 0) return null;
  const summary = stderr.slice(at);
  const integrated = /I:\s+(-?[\d.]+|-?inf|nan) LUFS/.exec(summary)?.[1];
  const lra = /LRA:\s+(-?[\d.]+|nan) LU\b/.exec(summary)?.[1];
  const truePeak = /True peak:\s+Peak:\s+(-?[\d.]+|-?inf) dBFS/.exec(summary)?.[1];
  const samplePeak = /Sample peak:\s+Peak:\s+(-?[\d.]+|-?inf) dBFS/.exec(summary)?.[1];
  if (integrated === undefined || lra === undefined) return null;
  const num = (s: string | undefined) => (s === undefined || /inf|nan/.test(s) ? null : Number(s));
  return {
    integrated: num(integrated) ?? -70,
    lra: num(lra) ?? 0,
    truePeak: num(truePeak),
    ...(samplePeak !== undefined && { samplePeak: num(samplePeak) }),
  };
}

/**
 * Follows ffmpeg's `-progress` output. Returns the output position in seconds when a
 * line carries it, null otherwise. (`out_time_ms` is in microseconds too, despite its name.)
 */
export function parseProgressLine(line: string): number | null {
  const m = /^out_time_(?:us|ms)=(\d+)$/.exec(line.trim());
  return m ? Number(m[1]) / 1_000_000 : null;
}
