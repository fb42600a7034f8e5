import { stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import {
  AppError,
  asFileStore,
  copyToFile,
  normalizeRequestSchema,
  storedPath,
  type FileStore,
  type Config,
  type JobHandler,
  type JobOutput,
  type JobRun,
  type Logger,
  type NormalizeLoudness,
  type NormalizeRequest,
  type NormalizeResult,
  type OutputFormat,
  type Storage,
} from '@media-jobs/libs';
import {
  gainFilters,
  limiterLevel,
  peakMargin,
  planGain,
  planOutput,
  preGainFilters,
  probedFormat,
  type GainPlan,
  type Loudness,
  type MediaInfo,
  type OutputPlan,
} from './ffmpeg.js';
import { encode, measureLoudness, measureTruePeak, probeMedia, type ToolPaths } from './media-tools.js';

export interface NormalizeJobDeps {
  config: Pick<Config, 'ffmpegPath' | 'ffprobePath' | 'normalizeTargetLufs' | 'normalizeTruePeakDb'>;
  /** Local folders: `tmp` for work, and the results' place when `files` is not given. */
  storage: Storage;
  /** Where uploads are read and results put (`STORAGE`); the folders of `storage` by default. */
  files?: FileStore;
  logger: Logger;
}

/** Share of the progress bar the quick measuring pass takes when there is one (about a sixth of the work). */
const MEASURE_SHARE = 15;

function parseRequest(run: JobRun): NormalizeRequest {
  const parsed = normalizeRequestSchema.safeParse(run.job.request);
  if (!parsed.success)
    throw new AppError('normalize.invalid_request', 'the job record holds no valid normalize request');
  return parsed.data;
}

/**
 * The stored upload: `<sha256>.<ext>` under the extension this request declared, or, when the
 * same bytes arrived first under another declared type, the one copy stored for them. A local
 * file is read in place; an object is copied into the run's work folder first.
 */
async function uploadInput(files: FileStore, request: NormalizeRequest, workDir: string): Promise<string> {
  const { sha256, ext } = request.upload;
  let name = `${sha256}.${ext}`;
  if (!(await files.stat('uploads', name))) {
    const stored = (await files.find('uploads', `${sha256}.`))[0];
    if (!stored) throw uploadMissing();
    name = stored.name;
  }
  const local = files.localPath('uploads', name);
  if (local) return local;
  const path = join(workDir, `input${extname(name)}`);
  if (!(await copyToFile(files, 'uploads', name, path))) throw uploadMissing();
  return path;
}

const uploadMissing = () =>
  new AppError('normalize.upload_missing', 'the uploaded file is no longer on disk; upload it again');

/**
 * The normalize job: probe, measure (only for `normalize_volume`), then one ffmpeg run that
 * applies every filter and the gain and encodes, while a second one measures what goes into
 * the encoder. The output is renamed into `normalized/<id>.<ext>` only when complete.
 */
export function createNormalizeHandler(deps: NormalizeJobDeps): JobHandler {
  return async (run) => {
    // Stops the background true-peak scan too when the job ends early for any reason.
    const scope = new AbortController();
    const stopScope = () => scope.abort();
    run.signal.addEventListener('abort', stopScope, { once: true });
    try {
      return await normalize(deps, run, scope.signal);
    } finally {
      run.signal.removeEventListener('abort', stopScope);
      scope.abort();
    }
  };
}

async function normalize(deps: NormalizeJobDeps, run: JobRun, signal: AbortSignal): Promise<JobOutput> {
  const tools: ToolPaths = deps.config;
  const request = parseRequest(run);
  const files = deps.files ?? asFileStore(deps.storage);
  const input = await uploadInput(files, request, run.workDir);
  run.progress(0, 'probing');
  const info = await probeMedia(tools, input, signal);
  const ops = request.operations;
  const plan = planOutput(request.format, info, ops);
  const pre = preGainFilters(ops, plan, info.channels);
  const step = ops.includes('normalize_volume')
    ? await measureStep(deps, run, request, input, info, pre, plan, signal)
    : null;
  const workOutput = join(run.workDir, `output.${plan.ext}`);
  const measured = await encodeStep(
    tools,
    run,
    { input, output: workOutput, plan, pre, duration: info.duration },
    step,
  );
  // Every field of the result that describes the file is read from the file itself.
  const output = await probeMedia(tools, workOutput, signal);
  const format = probedFormat(output);
  if (format !== plan.format)
    throw new AppError(
      'normalize.output_mismatch',
      `the output was to be ${plan.format} but ffprobe reads ${output.formatName}/${output.codec}`,
    );
  const inputLoudness = step ? { ...step.input, truePeak: await step.inputTruePeak } : null;
  const size = output.sizeBytes ?? (await stat(workOutput)).size;
  const name = `${run.job.id}.${plan.ext}`;
  await files.put('normalized', name, workOutput);
  const final = storedPath(files, 'normalized', name);
  const result = describeResult(run.job.id, request, { ext: plan.ext, format }, info, output, size);
  if (step && inputLoudness && measured) result.loudness = describeLoudness(step, inputLoudness, measured);
  return { result, files: [final] };
}

interface LoudnessStep {
  target: number;
  ceiling: number;
  /** Quick pass: integrated loudness, range and sample peak. */
  input: Loudness;
  /** The input's true peak (dBTP), still being measured while the encode starts. */
  inputTruePeak: Promise<number | null>;
  gain: GainPlan;
  /** Extra encodes made to switch the limiter on or to make up for the loudness it took. */
  corrections: number;
}

/**
 * Measures the loudness the gain is computed from with a quick pass (sample peaks only) and
 * starts the input's true-peak scan beside it, on the other core; that scan only feeds the
 * record, so it may finish while the encode already runs.
 */
async function measureStep(
  deps: NormalizeJobDeps,
  run: JobRun,
  request: NormalizeRequest,
  input: string,
  info: MediaInfo,
  filters: string[],
  plan: OutputPlan,
  signal: AbortSignal,
): Promise<LoudnessStep> {
  run.progress(0, 'measuring');
  const rate = request.operations.includes('sample_rate_16k') ? 16_000 : info.sampleRate || plan.sampleRate;
  const truePeakScan = measureTruePeak(deps.config, input, filters, rate, signal);
  truePeakScan.catch(() => undefined); // awaited later; a failure here also fails the quick pass
  const measured = await measureLoudness(deps.config, input, filters, {
    peak: 'sample',
    duration: info.duration,
    signal,
    onShare: (s) => run.progress(s * MEASURE_SHARE),
  });
  const target = request.target_lufs ?? deps.config.normalizeTargetLufs;
  const ceiling = deps.config.normalizeTruePeakDb;
  const gain = planGain(measured, target, ceiling, plan.format);
  deps.logger.debug({ job_id: run.job.id, measured, gain }, 'Loudness measured');
  return { target, ceiling, input: measured, inputTruePeak: truePeakScan, gain, corrections: 0 };
}

/** Output loudness further than this from the target, after limiting, earns a corrected encode. */
const CORRECTION_THRESHOLD_LU = 0.5;
const MAX_CORRECTIONS = 3;
/** Where the first encode ends on the progress bar; the rest is kept for corrected encodes. */
const ENCODE_END = 90;

/**
 * The share of the progress bar one encode covers. Corrected encodes each take half of what
 * is left below 99, so progress never goes back when one follows: an encode is not known to
 * need correcting until it has ended.
 */
function encodeSpan(from: number, correction: number): [number, number] {
  if (correction === 0) return [from, ENCODE_END];
  const left = 99 - ENCODE_END;
  return [99 - left / 2 ** (correction - 1), 99 - left / 2 ** correction];
}

interface EncodeJob {
  input: string;
  output: string;
  plan: OutputPlan;
  pre: string[];
  duration: number | null;
}

/**
 * Encodes with the planned gain, measuring input and output on the way. Two cases earn
 * another encode, both rare: true peaks over the ceiling that the sample-peak estimate missed,
 * and a limiter that tamed so many peaks that the loudness fell short (the signal under the
 * peaks scales linearly, so adding the miss to the gain converges in a run or two).
 */
async function encodeStep(
  tools: ToolPaths,
  run: JobRun,
  job: EncodeJob,
  step: LoudnessStep | null,
): Promise<Loudness | null> {
  const from = step ? MEASURE_SHARE : 0;
  run.progress(from, 'encoding');
  for (let correction = 0; ; correction += 1) {
    const [lo, hi] = encodeSpan(from, correction);
    if (correction > 0) run.progress(lo, 'correcting');
    const measured = await encode(
      tools,
      {
        input: job.input,
        output: job.output,
        plan: job.plan,
        pre: job.pre,
        gain: step ? gainFilters(step.gain) : [],
      },
      {
        duration: job.duration,
        signal: run.signal,
        onShare: (s) => run.progress(lo + s * (hi - lo)),
        workDir: run.workDir,
        measure: step !== null,
      },
    );
    if (!step || !measured || correction >= MAX_CORRECTIONS) return measured;
    const next = correctedGain(step, measured, job.plan);
    if (!next) return measured;
    step.gain = next;
    step.corrections = correction + 1;
  }
}

/**
 * A better gain plan after measuring the output, or null when the output is within bounds:
 * true peaks over the ceiling switch the limiter on, or lower its level by the excess (a
 * sample-peak limiter lets content with large inter-sample peaks through by a stable amount);
 * with the limiter on, a loudness miss is added to the gain.
 */
function correctedGain(step: LoudnessStep, output: Loudness, plan: OutputPlan): GainPlan | null {
  if (output.integrated <= -70) return null;
  let { gainDb, limitDb } = step.gain;
  const excess = output.truePeak === null ? 0 : output.truePeak - (step.ceiling - peakMargin(plan.format));
  if (excess > 0.05)
    limitDb = limitDb === null ? limiterLevel(step.ceiling, plan.format) : round2(limitDb - excess - 0.1);
  const miss = step.target - output.integrated;
  if (limitDb !== null && Math.abs(miss) > CORRECTION_THRESHOLD_LU) gainDb = round2(gainDb + miss);
  return gainDb === step.gain.gainDb && limitDb === step.gain.limitDb ? null : { gainDb, limitDb };
}

const round2 = (n: number): number => Math.round(n * 100) / 100;

function loudnessView(l: Loudness): NormalizeLoudness['input'] {
  return { integrated_lufs: l.integrated, loudness_range_lu: l.lra, true_peak_dbtp: l.truePeak };
}

/** `output` and `size` are ffprobe's reading of the written file, `format` what that reading is. */
function describeResult(
  id: string,
  request: NormalizeRequest,
  file: { ext: string; format: OutputFormat },
  input: MediaInfo,
  output: MediaInfo,
  size: number,
): NormalizeResult {
  return {
    file: `${id}.${file.ext}`,
    size_bytes: size,
    duration_s: output.duration,
    format: file.format,
    codec: output.codec,
    sample_rate: output.sampleRate,
    channels: output.channels,
    operations: request.operations,
    input: {
      container: input.formatName,
      codec: input.codec,
      sample_rate: input.sampleRate,
      channels: input.channels,
      duration_s: input.duration,
      had_video: input.hasVideo,
    },
  };
}

function describeLoudness(step: LoudnessStep, input: Loudness, output: Loudness): NormalizeLoudness {
  return {
    target_lufs: step.target,
    true_peak_ceiling_dbtp: step.ceiling,
    gain_db: step.gain.gainDb,
    limiter: step.gain.limitDb !== null,
    corrections: step.corrections,
    // Measured after the other operations, i.e. on what the gain applies to.
    input: loudnessView(input),
    // Measured on the exact signal fed to the encoder.
    output: loudnessView(output),
  };
}
