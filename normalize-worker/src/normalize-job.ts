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
  TRIAL_STEPS_DB,
  aimLufs,
  MAX_GAIN_DB,
  gainFilters,
  interpolateGain,
  limiterLevel,
  trialSlope,
  planGain,
  planOutput,
  preGainFilters,
  probedFormat,
  type EbuFrame,
  type GainPlan,
  type Loudness,
  type MediaInfo,
  type OutputPlan,
} from './ffmpeg.js';
import {
  encode,
  measureLoudness,
  measureTruePeak,
  probeMedia,
  trialLimiter,
  type ToolPaths,
} from './media-tools.js';

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
/** Share the limiter trial takes, when the gain needs a limiter. */
const TRIAL_SHARE = 10;

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
  /** What the output aims at: the target, or input + MAX_GAIN_DB when the gain is capped. */
  aim: number;
  ceiling: number;
  /** Quick pass: integrated loudness, range and sample peak. */
  input: Loudness;
  /** The input's true peak (dBTP), still being measured while the encode starts. */
  inputTruePeak: Promise<number | null>;
  gain: GainPlan;
  /** Output LU per dB of gain: 1 for a linear gain, less under a limiter (from its trial). */
  slope: number;
  /** Extra encodes made to switch the limiter on or to make up for the loudness it took. */
  corrections: number;
}

/** A limiter trial started while the measuring pass still runs, from its running reading. */
interface EarlyTrial {
  /** The gain the trial's steps were taken above. */
  gainDb: number;
  limitDb: number;
  points: Promise<TrialPoint[]>;
  stop: AbortController;
  /** How far this trial has read (0..1). */
  share: { value: number };
}

type TrialPoint = { gain: number; lufs: number };

/**
 * The limiter trial starts early, on the other core, once the measuring pass has read this
 * share of an input at least `EARLY_TRIAL_MIN_S` long and its running reading needs a limiter.
 */
const EARLY_TRIAL_AT = 0.2;
const EARLY_TRIAL_MIN_S = 30;
/**
 * An early trial's points serve when the final gain lies this close to the steps it tried
 * (dB below the first, above the last); otherwise the trial runs again at the final gain.
 */
const EARLY_TRIAL_SLACK_DB = 1;

/**
 * Measures the loudness the gain is computed from with a quick pass (sample peaks only) and
 * runs the limiter trial when the gain needs a limiter. The trial starts while the pass still
 * runs, at the gain its running reading gives, and is used when the final gain lands within
 * its steps (within 1 dB); an input whose loudness changes late gets a trial at the final gain.
 * The input's true-peak scan only feeds the record and runs beside the others from the start.
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
  truePeakScan.catch(() => undefined); // awaited after the encode
  const target = request.target_lufs ?? deps.config.normalizeTargetLufs;
  const ceiling = deps.config.normalizeTruePeakDb;
  // Only the trial whose points are used moves the bar, and only once measuring has ended
  // (an early trial runs alongside it); a stopped trial's last lines move nothing.
  let reporting: { value: number } | null = null;
  const trial = (gainDb: number, limitDb: number, trialSignal: AbortSignal) => {
    const share = { value: 0 };
    const points = trialLimiter(
      deps.config,
      input,
      filters,
      TRIAL_STEPS_DB.map((d) => gainDb + d),
      limitDb,
      {
        duration: info.duration,
        signal: trialSignal,
        onShare: (s) => {
          share.value = Math.max(share.value, s);
          if (reporting === share) run.progress(MEASURE_SHARE + share.value * TRIAL_SHARE);
        },
      },
    );
    return { points, share };
  };
  let early: EarlyTrial | null = null;
  const duration = info.duration ?? 0;
  const onFrame = (frame: EbuFrame) => {
    if (early || duration < EARLY_TRIAL_MIN_S || frame.seconds < duration * EARLY_TRIAL_AT) return;
    const guess = planGain({ ...frame, lra: 0, truePeak: null }, target, ceiling, plan.format);
    if (guess.limitDb === null) return;
    const stop = new AbortController();
    const { points, share } = trial(guess.gainDb, guess.limitDb, AbortSignal.any([signal, stop.signal]));
    points.catch(() => undefined); // awaited, or stopped, below
    early = { gainDb: guess.gainDb, limitDb: guess.limitDb, points, stop, share };
  };
  let measured: Loudness;
  try {
    measured = await measureLoudness(deps.config, input, filters, {
      peak: 'sample',
      duration: info.duration,
      signal,
      onShare: (s) => run.progress(s * MEASURE_SHARE),
      onFrame,
    });
  } catch (err) {
    (early as EarlyTrial | null)?.stop.abort();
    throw err;
  }
  const aim = aimLufs(measured, target);
  let gain = planGain(measured, target, ceiling, plan.format);
  let slope = 1;
  const started = early as EarlyTrial | null;
  const usable =
    started !== null &&
    gain.limitDb === started.limitDb &&
    gain.gainDb >= started.gainDb + (TRIAL_STEPS_DB[0] ?? 0) - EARLY_TRIAL_SLACK_DB &&
    gain.gainDb <= started.gainDb + (TRIAL_STEPS_DB.at(-1) ?? 0) + EARLY_TRIAL_SLACK_DB;
  if (started && !usable) started.stop.abort();
  if (gain.limitDb !== null) {
    // The limiter takes loudness from the peaks it holds; find the gain that makes up for it.
    const limitDb = gain.limitDb;
    const running = usable && started ? started : trial(gain.gainDb, limitDb, signal);
    reporting = running.share;
    run.progress(MEASURE_SHARE + running.share.value * TRIAL_SHARE, 'measuring the limiter');
    const points = await running.points.finally(() => (reporting = null));
    const wanted = interpolateGain(points, aim);
    const gainDb = Math.min(MAX_GAIN_DB, wanted);
    gain = { gainDb, limitDb, capped: gain.capped || gainDb < wanted };
    slope = trialSlope(points);
    deps.logger.debug({ job_id: run.job.id, points, aim, gainDb, early: usable }, 'Limiter trial');
  }
  deps.logger.debug({ job_id: run.job.id, measured, gain }, 'Loudness measured');
  return { target, aim, ceiling, input: measured, inputTruePeak: truePeakScan, gain, slope, corrections: 0 };
}

/**
 * Output loudness (measured on the encoded stream) further than this from the aim earns a
 * corrected encode; the promise is ±0.3 LU, and a run lands within about 0.1 of its plan.
 */
const CORRECTION_THRESHOLD_LU = 0.2;
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
  const from = step ? MEASURE_SHARE + (step.gain.limitDb === null ? 0 : TRIAL_SHARE) : 0;
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
  // Measured on the encoded stream, the true peak already holds what the codec added.
  const excess = output.truePeak === null ? 0 : output.truePeak - step.ceiling;
  if (excess > 0.1)
    limitDb = limitDb === null ? limiterLevel(step.ceiling, plan.format) : round2(limitDb - excess - 0.1);
  const miss = step.aim - output.integrated;
  let capped = step.gain.capped;
  if (Math.abs(miss) > CORRECTION_THRESHOLD_LU) {
    // Under a limiter a dB of gain buys less than a LU; the trial measured how much.
    gainDb = round2(gainDb + miss / (limitDb === null ? 1 : step.slope));
    if (gainDb > MAX_GAIN_DB) [gainDb, capped] = [MAX_GAIN_DB, true];
  }
  return gainDb === step.gain.gainDb && limitDb === step.gain.limitDb ? null : { gainDb, limitDb, capped };
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
    gain_capped: step.gain.capped,
    corrections: step.corrections,
    // Measured after the other operations, i.e. on what the gain applies to.
    input: loudnessView(input),
    // Measured on the encoded stream, decoded while it was written.
    output: loudnessView(output),
  };
}
