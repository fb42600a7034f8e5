/**
 * `npm run bench:normalize`: loudness normalization of a 10-minute stereo MP3, measured side
 * by side in one run, with the same target, ceiling and encoder (Opus, as the job's default):
 *
 * (a) the two-pass method of ffmpeg-normalize: a `loudnorm` measuring pass, then `loudnorm`
 *     in linear mode with the measured values, encoding;
 * (b) the `normalize_volume` job through the stack: an in-process gateway and worker on
 *     their own nats-server, redis-server and DATA_DIR; POST /normalize until `completed`;
 * (c) decode + encode alone, the floor.
 *
 * Targets: (a)/(b) >= 4, (b)/(c) <= 1.3, and (b)'s output within 0.3 LU of the target with its
 * true peak <= ceiling + 0.2 dB. Then each of the four kinds of input the tests use (quiet,
 * loud, very dynamic, near-silent; BENCH_KIND_SECONDS long, 60) goes through the stack once and
 * its output is measured: within 0.3 LU of the target (near-silent: of input + 30 dB, the
 * capped gain). The fixture is made once and kept in the OS temp folder.
 * Methods run interleaved BENCH_REPS times (3) and the best time of each counts, so a burst
 * of other work on the machine does not decide the ratios. Knobs (environment):
 * BENCH_MINUTES (10), BENCH_REPS (3). Progress goes to stderr, the results to stdout.
 */
import { openAsBlob } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { connectNats, createLogger, jobEventSchema, runProcess, type NatsConnection } from '@media-jobs/libs';
import { startPlatform } from '@media-jobs/libs/testing';
import { startGateway } from '../gateway/src/gateway.js';
import {
  codecArgs,
  parseEbur128Summary,
  parseProgressLine,
  type Loudness,
} from '../normalize-worker/src/ffmpeg.js';
import { MAX_GAIN_DB } from '../normalize-worker/src/ffmpeg.js';
import { startNormalizeWorker } from '../normalize-worker/src/worker.js';
import { LOUDNESS_KINDS } from '../normalize-worker/test/helpers.js';

const MINUTES = Number(process.env.BENCH_MINUTES ?? '10');
const REPS = Math.max(1, Math.floor(Number(process.env.BENCH_REPS ?? '3')) || 1);
const SECONDS = Math.round(MINUTES * 60);
const TARGET = -16;
const CEILING = -1.5;
const ENCODER = codecArgs('opus', 2).args;

const tty = process.stderr.isTTY;
/** A status line: rewritten in place on a terminal, one line each in a log file. */
const status = (line: string): void => void process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
const log = (msg: string): void => void process.stderr.write(`${tty ? '\r\x1b[K' : ''}bench: ${msg}\n`);
const fmt = (n: number, digits = 2): string => n.toFixed(digits);

/** Runs ffmpeg, showing its position as a share of the fixture on one status line. */
async function ffmpeg(label: string, args: string[]): Promise<string> {
  let lastShown = 0;
  const result = await runProcess(
    'ffmpeg',
    ['-hide_banner', '-nostdin', '-nostats', '-progress', 'pipe:1', ...args],
    {
      stderrTail: 20_000,
      onStdoutLine: (line) => {
        const at = parseProgressLine(line);
        if (at === null || Date.now() - lastShown < 1000) return;
        lastShown = Date.now();
        status(`bench:   ${label}: ${fmt((100 * at) / SECONDS, 0)}%`);
      },
    },
  );
  if (result.code !== 0) throw new Error(`ffmpeg (${label}) failed: ${result.stderr.slice(-1500)}`);
  return result.stderr;
}

/** Speech-like dynamics over music-like noise: a syllable rhythm, pauses and sharper peaks, about -30 LUFS. */
async function fixture(): Promise<string> {
  const dir = join(tmpdir(), 'media-jobs-bench');
  const path = join(dir, `normalize-${SECONDS}s-v1.mp3`);
  if (
    await stat(path).then(
      () => true,
      () => false,
    )
  )
    return path;
  await mkdir(dir, { recursive: true });
  log(`making the ${MINUTES}-minute fixture once (${path})`);
  const work = `${path}.${process.pid}.part.mp3`;
  await ffmpeg('fixture', [
    '-y',
    '-f',
    'lavfi',
    '-i',
    `anoisesrc=color=pink:amplitude=0.25:sample_rate=44100:duration=${SECONDS}:seed=7`,
    '-f',
    'lavfi',
    '-i',
    `sine=frequency=180:sample_rate=44100:duration=${SECONDS}`,
    '-filter_complex',
    "[0][1]amix=inputs=2:weights=1 0.6:normalize=0,volume='0.05+0.2*gt(sin(2*PI*t*0.9)\\,0)*(0.5+0.5*sin(2*PI*t*4))':eval=frame,pan=stereo|c0=c0|c1=0.8*c0",
    '-c:a',
    'libmp3lame',
    '-b:a',
    '192k',
    work,
  ]);
  await rename(work, path);
  return path;
}

async function loudnessOf(path: string): Promise<Loudness> {
  const stderr = await ffmpeg('measuring', [
    '-i',
    path,
    '-af',
    'ebur128=peak=true:framelog=verbose',
    '-f',
    'null',
    '-',
  ]);
  const l = parseEbur128Summary(stderr);
  if (!l) throw new Error(`no loudness for ${path}`);
  return l;
}

/**
 * CPU seconds used so far by this process and its waited-for children (every ffmpeg run,
 * the worker's included, as the worker runs in this process). Unlike wall time it does not
 * depend on what else the machine is doing. Linux: /proc/self/stat, 100 ticks a second.
 */
async function cpuSeconds(): Promise<number> {
  const stat = await readFile('/proc/self/stat', 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the name: state is field 3, so cutime (16) and cstime (17) are at 13 and 14.
  const children = (Number(fields[13]) + Number(fields[14])) / 100;
  const self = process.cpuUsage();
  return (Number.isFinite(children) ? children : 0) + (self.user + self.system) / 1e6;
}

interface Timing {
  seconds: number;
  cpu: number;
}

async function timed(what: () => Promise<unknown>): Promise<Timing> {
  const [t0, cpu0] = [performance.now(), await cpuSeconds()];
  await what();
  return { seconds: (performance.now() - t0) / 1000, cpu: (await cpuSeconds()) - cpu0 };
}

/** (a) ffmpeg-normalize's method: loudnorm measures, then loudnorm linear with those values. */
async function twoPassLoudnorm(input: string, output: string): Promise<void> {
  const base = `i=${TARGET}:lra=7:tp=${CEILING}`;
  const first = await ffmpeg('loudnorm pass 1', [
    '-i',
    input,
    '-af',
    `loudnorm=${base}:print_format=json`,
    '-f',
    'null',
    '-',
  ]);
  const json = JSON.parse(first.slice(first.lastIndexOf('{'), first.lastIndexOf('}') + 1)) as Record<
    string,
    string
  >;
  const measured = `measured_i=${json.input_i}:measured_lra=${json.input_lra}:measured_tp=${json.input_tp}:measured_thresh=${json.input_thresh}:offset=${json.target_offset}`;
  await ffmpeg('loudnorm pass 2', [
    '-y',
    '-i',
    input,
    '-af',
    `loudnorm=${base}:${measured}:linear=true:print_format=json`,
    '-ar',
    '48000',
    ...ENCODER,
    output,
  ]);
}

/** (c) The floor: decode, resample to Opus's rate, encode. */
async function decodeEncode(input: string, output: string): Promise<void> {
  await ffmpeg('decode+encode', ['-y', '-i', input, '-ar', '48000', ...ENCODER, output]);
}

/** The part of the `POST /normalize` answer the bench reads. */
interface JobBody {
  id: string;
}

interface JobResult {
  file: string;
  loudness?: {
    gain_db: number;
    limiter: boolean;
    gain_capped?: boolean;
    corrections: number;
    input: unknown;
    output: { integrated_lufs: number };
  };
}

/** A point in a job's run: what began (upload answered, started, a stage, completed) and when, in seconds from the POST. */
interface Mark {
  what: string;
  at: number;
}

interface Stack {
  /** POSTs the file, waits for `completed`, copies the output aside and deletes the job (so the next rep is no cache hit). */
  normalize(input: string, copyTo: string): Promise<Timing & { result: JobResult; marks: Mark[] }>;
  close(): Promise<void>;
}

/** (b) The stack: an in-process gateway and worker on their own nats-server, redis-server and DATA_DIR. */
async function startStack(): Promise<Stack> {
  const platform = await startPlatform();
  const config = platform.config({
    LOG_LEVEL: 'warn',
    NORMALIZE_TARGET_LUFS: String(TARGET),
    NORMALIZE_TRUE_PEAK_DB: String(CEILING),
    MAX_UPLOAD_MB: '1024',
  });
  const gateway = await startGateway(config, createLogger('gateway', config));
  const worker = await startNormalizeWorker(config, createLogger('normalize-worker', config));
  const nc = await connectNats(config, 'bench');
  const watcher = jobWatcher(nc);
  return {
    async normalize(input, copyTo) {
      const [t0, cpu0] = [performance.now(), await cpuSeconds()];
      const form = new FormData();
      form.append('operations[]', 'normalize_volume');
      form.append('file', await openAsBlob(input, { type: 'audio/mpeg' }), 'bench.mp3');
      const res = await fetch(`${gateway.url}/normalize`, { method: 'POST', body: form });
      const job = (await res.json()) as JobBody;
      const answered = (performance.now() - t0) / 1000;
      const completed = watcher.wait(job.id, t0);
      if (res.status !== 202)
        throw new Error(`POST /normalize answered ${res.status}: ${JSON.stringify(job)}`);
      log(`  upload answered 202 after ${fmt((performance.now() - t0) / 1000)} s`);
      const { result, marks } = await completed;
      const seconds = (performance.now() - t0) / 1000;
      const cpu = (await cpuSeconds()) - cpu0;
      await copyFile(join(platform.dataDir, 'normalized', result.file), copyTo);
      await fetch(`${gateway.url}/jobs/${job.id}`, { method: 'DELETE' });
      marks.unshift({ what: 'upload', at: 0 }, { what: 'queued', at: answered });
      return { seconds, cpu, result, marks };
    },
    async close() {
      await nc.drain();
      await worker.stop();
      await gateway.stop();
      await platform.close();
    },
  };
}

/**
 * Follows job events (`started`, `progress`, `completed`, `failed`) on NATS rather than
 * polling the API, so waiting costs the measured stack nothing.
 */
function jobWatcher(nc: NatsConnection): {
  wait(id: string, t0: number): Promise<{ result: JobResult; marks: Mark[] }>;
} {
  const waiting = new Map<
    string,
    {
      t0: number;
      resolve(r: { result: JobResult; marks: Mark[] }): void;
      reject(e: Error): void;
      shown: number;
      marks: Mark[];
    }
  >();
  nc.subscribe('events.job.normalize.>', {
    callback: (_err, msg) => {
      const event = jobEventSchema.parse(msg.json());
      const w = waiting.get(event.job_id);
      if (!w) return;
      const seconds = (performance.now() - w.t0) / 1000;
      const at = fmt(seconds);
      if (
        event.type === 'started' ||
        event.type === 'completed' ||
        (event.type === 'progress' && event.stage)
      )
        w.marks.push({ what: event.type === 'progress' ? (event.stage ?? '') : event.type, at: seconds });
      if (event.type === 'completed')
        w.resolve({ result: event.result as unknown as JobResult, marks: w.marks });
      else if (event.type === 'failed') w.reject(new Error(`the job failed: ${JSON.stringify(event.error)}`));
      else if (event.type === 'started') log(`  started at ${at} s`);
      else if (event.type === 'progress' && (event.stage || Date.now() - w.shown > 1000)) {
        w.shown = Date.now();
        const line = `bench:   job: ${fmt(event.progress, 0)}%`;
        if (event.stage) log(`  job: ${fmt(event.progress, 0)}% ${event.stage} at ${at} s`);
        else status(line);
      }
    },
  });
  return {
    wait: (id, t0) =>
      new Promise<{ result: JobResult; marks: Mark[] }>((resolve, reject) =>
        waiting.set(id, { t0, resolve, reject, shown: 0, marks: [] }),
      ).finally(() => waiting.delete(id)),
  };
}

async function main(): Promise<void> {
  const input = await fixture();
  const work = await mkdtemp(join(tmpdir(), 'media-jobs-bench-'));
  const stack = await startStack();
  try {
    const source = await loudnessOf(input);
    log(
      `fixture: ${MINUTES} min stereo MP3, ${fmt(source.integrated, 1)} LUFS, true peak ${fmt(source.truePeak ?? -Infinity, 1)} dBTP`,
    );
    const times: Times = { a: [], b: [], c: [] };
    let result: JobResult | undefined;
    // Interleaved reps, best of each: other work on the machine slows one run, not one method.
    for (let rep = 1; rep <= REPS; rep += 1) {
      log(`rep ${rep}/${REPS}: (c) decode + encode`);
      times.c.push(await timed(() => decodeEncode(input, join(work, 'c.opus'))));
      log(`rep ${rep}/${REPS}: (a) two-pass loudnorm`);
      times.a.push(await timed(() => twoPassLoudnorm(input, join(work, 'a.opus'))));
      log(`rep ${rep}/${REPS}: (b) normalize_volume job through the stack`);
      const b = await stack.normalize(input, join(work, 'b.opus'));
      times.b.push(b);
      result = b.result;
    }
    const aLoud = await loudnessOf(join(work, 'a.opus'));
    const bLoud = await loudnessOf(join(work, 'b.opus'));
    report(times, aLoud, bLoud, result);
    await kinds(stack, work);
  } finally {
    await stack.close();
    await rm(work, { recursive: true, force: true });
  }
}

type Times = Record<'a' | 'c', Timing[]> & { b: (Timing & { marks: Mark[] })[] };

/**
 * Where (b)'s time went, stage by stage as the job's events tell it: each stage lasts until
 * the next begins ("started" is the wait for the worker; "encoding" holds the encode with the
 * output meter beside it, then the output probe and the store).
 */
function timeline(marks: Mark[]): string {
  return marks
    .slice(0, -1)
    .map((m, i) => `${m.what} ${fmt((marks[i + 1] as Mark).at - m.at)}`)
    .join(', ');
}

const best = (xs: Timing[]): Timing => xs.reduce((m, x) => (x.seconds < m.seconds ? x : m));

function row(name: string, xs: Timing[], l?: Loudness): string {
  const b = best(xs);
  const runs = xs.length > 1 ? `  runs: ${xs.map((x) => fmt(x.seconds)).join(', ')} s` : '';
  const loud = l ? `  ${fmt(l.integrated, 1)} LUFS, TP ${fmt(l.truePeak ?? -Infinity, 1)} dBTP` : '';
  return `  ${name.padEnd(44)} ${fmt(b.seconds).padStart(7)} s  ${fmt(b.cpu).padStart(6)} cpu-s${loud}${runs}`;
}

function report(times: Times, aLoud: Loudness, bLoud: Loudness, result: JobResult | undefined): void {
  const [a, b, c] = [best(times.a), best(times.b) as Times['b'][number], best(times.c)];
  const ok = (cond: boolean) => (cond ? 'ok' : 'MISSED');
  const loudOk = Math.abs(bLoud.integrated - TARGET) <= 0.3;
  const peakOk = (bLoud.truePeak ?? -Infinity) <= CEILING + 0.2;
  const lines = [
    '',
    `normalize_volume on a ${MINUTES}-minute stereo MP3 -> Opus ${ENCODER.join(' ')}, target ${TARGET} LUFS, ceiling ${CEILING} dBTP; best of ${REPS}`,
    `  ${''.padEnd(44)} ${'wall'.padStart(9)}  ${'cpu'.padStart(12)}`,
    row('(a) two-pass loudnorm (ffmpeg-normalize way)', times.a, aLoud),
    row('(b) normalize_volume job through the stack', times.b, bLoud),
    row('(c) decode + encode alone (floor)', times.c),
    `  (a)/(b) = ${fmt(a.seconds / b.seconds)}x faster    target >= 4   ${ok(a.seconds / b.seconds >= 4)}   (cpu: ${fmt(a.cpu / b.cpu)}x)`,
    `  (b)/(c) = ${fmt(b.seconds / c.seconds)}x the floor  target <= 1.3 ${ok(b.seconds / c.seconds <= 1.3)}   (cpu: ${fmt(b.cpu / c.cpu)}x)`,
    `  (b) output: ${fmt(bLoud.integrated, 1)} LUFS (target ${TARGET} +-0.3: ${ok(loudOk)}), true peak ${fmt(bLoud.truePeak ?? -Infinity, 1)} dBTP (<= ${fmt(CEILING + 0.2, 1)}: ${ok(peakOk)})`,
    `  (b) where its time went (s): ${timeline(b.marks)}`,
    `  (b) job record: gain ${result?.loudness?.gain_db} dB, limiter ${result?.loudness?.limiter}, input ${JSON.stringify(result?.loudness?.input)}, output ${JSON.stringify(result?.loudness?.output)}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

const KIND_SECONDS = Number(process.env.BENCH_KIND_SECONDS ?? '60');

/** Each kind of input through the stack once: where its output lands beside where it should. */
async function kinds(stack: Stack, work: string): Promise<void> {
  const lines = [
    '',
    `accuracy per kind of input (${KIND_SECONDS} s each, Opus, ebur128 on the output file; target ${TARGET} LUFS +-0.3 LU, true peak <= ${fmt(CEILING + 0.2, 1)} dBTP):`,
  ];
  for (const [kind, make] of Object.entries(LOUDNESS_KINDS)) {
    log(`kind ${kind}`);
    const input = await make(join(work, `${kind}.wav`), KIND_SECONDS);
    const before = await loudnessOf(input);
    const b = await stack.normalize(input, join(work, `${kind}.opus`));
    const after = await loudnessOf(join(work, `${kind}.opus`));
    const capped = b.result.loudness?.gain_capped === true;
    const aim = capped ? before.integrated + MAX_GAIN_DB : TARGET;
    const miss = after.integrated - aim;
    const okLoud = Math.abs(miss) <= 0.3;
    const okPeak = (after.truePeak ?? -Infinity) <= CEILING + 0.2;
    lines.push(
      `  ${kind.padEnd(11)} in ${fmt(before.integrated, 1).padStart(6)} LUFS TP ${fmt(before.truePeak ?? -Infinity, 1).padStart(6)}` +
        `  -> out ${fmt(after.integrated, 1).padStart(6)} LUFS (aim ${fmt(aim, 1)}${capped ? ', gain capped at +30 dB' : ''}: ${miss >= 0 ? '+' : ''}${fmt(miss, 2)} LU ${okLoud ? 'ok' : 'MISSED'})` +
        `  TP ${fmt(after.truePeak ?? -Infinity, 1)} dBTP ${okPeak ? 'ok' : 'MISSED'}` +
        `  gain ${b.result.loudness?.gain_db} dB, limiter ${b.result.loudness?.limiter}, corrections ${b.result.loudness?.corrections}, record out ${fmt(b.result.loudness?.output.integrated_lufs ?? NaN, 1)} LUFS, ${fmt(b.seconds)} s`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
