import { access, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AppError,
  normalizeRequestSchema,
  type Config,
  type JobHandler,
  type JobRun,
  type Logger,
  type NormalizeRequest,
  type Storage,
} from '@media-jobs/libs';
import {
  gainFilters,
  limiterLevel,
  peakMargin,
  planGain,
  planOutput,
  preGainFilters,
  type GainPlan,
  type Loudness,
  type MediaInfo,
  type OutputPlan,
} from './ffmpeg.js';
import { encode, measureLoudness, probeMedia, type Measured, type ToolPaths } from './media-tools.js';

export interface NormalizeJobDeps {
  config: Pick<Config, 'ffmpegPath' | 'ffprobePath' | 'normalizeTargetLufs' | 'normalizeTruePeakDb'>;
  storage: Storage;
  logger: Logger;
}

/** Share of the progress bar the measuring pass takes when there is one (it is about a third of the work). */
const MEASURE_SHARE = 30;

function parseRequest(run: JobRun): NormalizeRequest {
  const parsed = normalizeRequestSchema.safeParse(run.job.request);
  if (!parsed.success) throw new AppError('normalize.invalid_request', 'the job record holds no valid normalize request');
  return parsed.data;
}

async function uploadPath(storage: Storage, request: NormalizeRequest): Promise<string> {
  const path = join(storage.uploads, `${request.upload.sha256}.${request.upload.ext}`);
  try {
    await access(path);
  } catch {
    throw new AppError('normalize.upload_missing', 'the uploaded file is no longer on disk; upload it again');
  }
  return path;
}

/**
 * The normalize job: probe, measure (only for `normalize_volume`), then one ffmpeg run that
 * applies every filter and the gain and encodes, while a second process measures what goes
 * into the encoder. The output is renamed into `normalized/<id>.<ext>` only when complete.
 */
export function createNormalizeHandler(deps: NormalizeJobDeps): JobHandler {
  const tools: ToolPaths = deps.config;
  return async (run) => {
    const request = parseRequest(run);
    const input = await uploadPath(deps.storage, request);
    run.progress(0, 'probing');
    const info = await probeMedia(tools, input, run.signal);
    const ops = request.operations;
    const plan = planOutput(request.format, info, ops);
    const pre = preGainFilters(ops, plan, info.channels);
    const step = ops.includes('normalize_volume') ? await measureStep(deps, run, request, input, info, pre, plan) : null;
    const workOutput = join(run.workDir, `output.${plan.ext}`);
    const preRate = ops.includes('sample_rate_16k') ? 16_000 : info.sampleRate;
    const measured = await encodeStep(tools, run, { input, output: workOutput, plan, pre, duration: info.duration, preRate }, step);
    const output = await probeMedia(tools, workOutput, run.signal);
    const { size } = await stat(workOutput);
    const final = join(deps.storage.normalized, `${run.job.id}.${plan.ext}`);
    await rename(workOutput, final);
    return { result: describeResult(run.job.id, request, plan, info, output, size, step, measured), files: [final] };
  };
}

interface LoudnessStep {
  target: number;
  ceiling: number;
  input: Loudness;
  gain: GainPlan;
  /** Extra encodes made because the limiter lowered the loudness. */
  corrections: number;
}

async function measureStep(
  deps: NormalizeJobDeps,
  run: JobRun,
  request: NormalizeRequest,
  input: string,
  info: MediaInfo,
  filters: string[],
  plan: OutputPlan,
): Promise<LoudnessStep> {
  run.progress(0, 'measuring');
  const measured = await measureLoudness(deps.config, input, filters, info.duration, run.signal, (s) => run.progress(s * MEASURE_SHARE));
  const target = request.target_lufs ?? deps.config.normalizeTargetLufs;
  const ceiling = deps.config.normalizeTruePeakDb;
  const gain = planGain(measured, target, ceiling, plan.format);
  deps.logger.debug({ job_id: run.job.id, measured, gain }, 'Loudness measured');
  return { target, ceiling, input: measured, gain, corrections: 0 };
}

/** Output loudness further than this from the target, after limiting, earns a corrected encode. */
const CORRECTION_THRESHOLD_LU = 0.5;
const MAX_CORRECTIONS = 2;

interface EncodeJob {
  input: string;
  output: string;
  plan: OutputPlan;
  pre: string[];
  duration: number | null;
  /** Sample rate after the pre-gain filters. */
  preRate: number;
}

/**
 * Encodes with the planned gain, measuring input and output on the way. Two cases earn a
 * second encode, both rare: true peaks over the ceiling that the sample-peak estimate missed
 * (the limiter is switched on), and a limiter that tamed so many peaks that the loudness fell
 * short (the signal under the peaks scales linearly, so adding the miss to the gain converges).
 */
async function encodeStep(tools: ToolPaths, run: JobRun, job: EncodeJob, step: LoudnessStep | null): Promise<Measured | null> {
  const from = step ? MEASURE_SHARE : 0;
  run.progress(from, 'encoding');
  for (let correction = 0; ; correction += 1) {
    const [lo, hi] = correction === 0 ? [from, 99] : [90, 99];
    const measured = await encode(
      tools,
      { input: job.input, output: job.output, plan: job.plan, pre: job.pre, gain: step ? gainFilters(step.gain) : [] },
      {
        duration: job.duration,
        signal: run.signal,
        onShare: (s) => run.progress(lo + s * (hi - lo)),
        workDir: run.workDir,
        ...(step && { measureAtRate: job.preRate }),
      },
    );
    if (!step || !measured || correction >= MAX_CORRECTIONS) return measured;
    const next = correctedGain(step, measured.output, job.plan);
    if (!next) return measured;
    step.gain = next;
    step.corrections = correction + 1;
    run.progress(90, 'correcting');
  }
}

/** A better gain plan after measuring the output, or null when the output is within bounds. */
function correctedGain(step: LoudnessStep, output: Loudness, plan: OutputPlan): GainPlan | null {
  if (output.integrated <= -70) return null;
  const allowed = step.ceiling - peakMargin(plan.format);
  if (step.gain.limitDb === null) {
    const over = output.truePeak !== null && output.truePeak > allowed + 0.05;
    return over ? { ...step.gain, limitDb: limiterLevel(step.ceiling, plan.format) } : null;
  }
  const miss = step.target - output.integrated;
  if (Math.abs(miss) <= CORRECTION_THRESHOLD_LU) return null;
  return { ...step.gain, gainDb: Math.round((step.gain.gainDb + miss) * 100) / 100 };
}

function loudnessView(l: Loudness) {
  return { integrated_lufs: l.integrated, loudness_range_lu: l.lra, true_peak_dbtp: l.truePeak };
}

function describeResult(
  id: string,
  request: NormalizeRequest,
  plan: OutputPlan,
  input: MediaInfo,
  output: MediaInfo,
  size: number,
  step: LoudnessStep | null,
  measured: Measured | null,
): Record<string, unknown> {
  return {
    file: `${id}.${plan.ext}`,
    size,
    duration: output.duration,
    format: plan.format,
    codec: output.codec,
    sample_rate: output.sampleRate,
    channels: output.channels,
    operations: request.operations,
    input: {
      container: input.formatName,
      codec: input.codec,
      sample_rate: input.sampleRate,
      channels: input.channels,
      duration: input.duration,
      had_video: input.hasVideo,
    },
    ...(step && {
      loudness: {
        target_lufs: step.target,
        true_peak_ceiling_dbtp: step.ceiling,
        gain_db: step.gain.gainDb,
        limiter: step.gain.limitDb !== null,
        corrections: step.corrections,
        // Measured after the other operations, i.e. on what the gain applies to.
        input: loudnessView(measured?.input ?? step.input),
        // Measured on the exact signal fed to the encoder.
        output: measured ? loudnessView(measured.output) : null,
      },
    }),
  };
}
