import { createHash } from 'node:crypto';
import { copyFile, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import {
  JobQueue,
  JobStore,
  createStorage,
  ensureStorage,
  normalizeJobId,
  operationsSlug,
  retainUpload,
  type JobRecord,
  type NatsConnection,
  type Operation,
  type OutputFormat,
} from '@media-jobs/libs';
import { run, waitUntil } from '@media-jobs/libs/testing';
import { parseEbur128Summary, type Loudness } from '../src/ffmpeg.js';

/** Makes an audio fixture with ffmpeg from lavfi sources: `inputs` are `-f lavfi -i` sources, `graph` a filter_complex ending in [out]. */
export async function makeAudio(
  out: string,
  inputs: string[],
  graph: string,
  extra: string[] = [],
): Promise<string> {
  const args = ['-hide_banner', '-loglevel', 'error', '-y'];
  for (const i of inputs) args.push('-f', 'lavfi', '-i', i);
  await run('ffmpeg', [...args, '-filter_complex', graph, '-map', '[out]', ...extra, out]);
  return out;
}

/** Speech-like: a 220 Hz voice with a syllable rhythm, about -40 LUFS, with 2 ms clicks up to -6 dBFS once a second. */
export function quietWithPeaks(out: string, seconds = 8): Promise<string> {
  const expr = `0.02*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*4*t))+if(lt(mod(t\\,1)\\,0.002)\\,0.5*sin(2*PI*2000*t)\\,0)`;
  return makeAudio(out, [`aevalsrc=exprs=${expr}|${expr}:s=48000:d=${seconds}`], '[0]anull[out]');
}

/**
 * Quiet speech-like audio with 3 ms bursts at 12 kHz sampled 45 degrees off their crests:
 * about -37 LUFS, sample peak -21.6 dBFS, true peak -18.4 dBTP (3 dB of inter-sample peak).
 */
export function interSamplePeaks(out: string, seconds = 8): Promise<string> {
  const expr = `0.02*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*4*t))+if(lt(mod(t\\,1)\\,0.003)\\,0.1*sin(2*PI*12000*t+PI/4)\\,0)`;
  return makeAudio(out, [`aevalsrc=exprs=${expr}|${expr}:s=48000:d=${seconds}`], '[0]anull[out]');
}

/** Loud, squashed pink noise around -7 LUFS with peaks at full scale, as over-mastered audio is. */
export function loudNoise(out: string, seconds = 8): Promise<string> {
  return makeAudio(
    out,
    [`anoisesrc=color=pink:amplitude=1:sample_rate=44100:duration=${seconds}:seed=11`],
    '[0]volume=8dB,alimiter=limit=0.97:level=false,pan=stereo|c0=c0|c1=c0[out]',
  );
}

/** A 1 kHz tone at -10 dBFS plus white noise. */
export function toneWithNoise(out: string, seconds = 6): Promise<string> {
  return makeAudio(
    out,
    [
      `sine=frequency=1000:sample_rate=48000:duration=${seconds}`,
      `anoisesrc=color=white:amplitude=0.02:sample_rate=48000:duration=${seconds}:seed=3`,
    ],
    '[0]volume=2.5[t];[t][1]amix=inputs=2:normalize=0,pan=stereo|c0=c0|c1=c0[out]',
  );
}

export function tone(out: string, hz: number, seconds = 4, rate = 48000): Promise<string> {
  return makeAudio(
    out,
    [`sine=frequency=${hz}:sample_rate=${rate}:duration=${seconds}`],
    '[0]volume=2,pan=stereo|c0=c0|c1=c0[out]',
  );
}

/** Video and audio codecs a container usually carries, for `makeVideo`. */
const VIDEO_CODECS = {
  mkv: ['-c:v', 'libx264', '-preset', 'ultrafast', '-c:a', 'libopus', '-b:a', '64k'],
  webm: ['-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '200k', '-c:a', 'libvorbis'],
  mov: ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-b:a', '96k'],
} as const;

export type VideoContainer = keyof typeof VIDEO_CODECS;

/** A small video (test pattern) with a stereo speech-like audio stream at about -30 LUFS, in `out`'s container. */
export async function makeVideo(out: string, container: VideoContainer, seconds = 3): Promise<string> {
  const voice = `0.03*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*4*t))`;
  await run('ffmpeg', [
    ...['-hide_banner', '-loglevel', 'error', '-y'],
    ...['-f', 'lavfi', '-i', `testsrc2=size=160x120:rate=15:duration=${seconds}`],
    ...['-f', 'lavfi', '-i', `aevalsrc=exprs=${voice}|${voice}:s=48000:d=${seconds}`],
    ...['-map', '0:v', '-map', '1:a', ...VIDEO_CODECS[container], out],
  ]);
  return out;
}

/** EBU R128 loudness and true peak of a file, measured by ffmpeg. */
export async function loudnessOf(path: string): Promise<Loudness> {
  const { stderr } = await run('ffmpeg', [
    '-hide_banner',
    '-nostats',
    '-i',
    path,
    '-af',
    'ebur128=peak=true:framelog=verbose',
    '-f',
    'null',
    '-',
  ]);
  const l = parseEbur128Summary(stderr);
  if (!l) throw new Error(`no ebur128 summary for ${path}`);
  return l;
}

/** Mean volume (dB) of a file after `filter`, skipping the first half second (filter settling). */
export async function meanVolume(path: string, filter = 'anull'): Promise<number> {
  const { stderr } = await run('ffmpeg', [
    '-hide_banner',
    '-nostats',
    '-i',
    path,
    '-af',
    `${filter},atrim=start=0.5,volumedetect`,
    '-f',
    'null',
    '-',
  ]);
  const m = /mean_volume:\s+(-?[\d.]+|-inf) dB/.exec(stderr);
  if (!m?.[1]) throw new Error(`no volumedetect output for ${path}`);
  return m[1] === '-inf' ? -Infinity : Number(m[1]);
}

export interface Submitter {
  store: JobStore;
  submit(file: string, operations: Operation[], format?: OutputFormat, ext?: string): Promise<JobRecord>;
  waitFor(id: string, status: JobRecord['status'], timeoutMs?: number): Promise<JobRecord>;
}

/** Creates normalize jobs as the gateway would (upload copy, claim, upload reference, enqueue), without HTTP. */
export function submitter(nc: NatsConnection, redis: Redis, dataDir: string, defaultTarget = -16): Submitter {
  const store = new JobStore({ redis, ttlMs: 3_600_000 });
  const queue = new JobQueue(nc);
  const storage = createStorage(dataDir);
  return {
    store,
    async submit(file, operations, format = 'opus', ext = file.split('.').pop() ?? 'bin') {
      await ensureStorage(storage);
      const bytes = await readFile(file);
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      await copyFile(file, join(storage.uploads, `${sha256}.${ext}`));
      const id = normalizeJobId(
        sha256,
        operationsSlug({ operations, format, targetLufs: defaultTarget, defaultTargetLufs: defaultTarget }),
      );
      const request = {
        upload: { sha256, ext, size: (await stat(file)).size, original_name: null },
        operations: [...operations].sort(),
        format,
        target_lufs: operations.includes('normalize_volume') ? defaultTarget : null,
      };
      const { created, job } = await store.claim('normalize', id, request);
      if (created) {
        await retainUpload(redis, id);
        await queue.enqueue(job.record);
      }
      return job.record;
    },
    async waitFor(id, status, timeoutMs = 60_000) {
      const job = await waitUntil(
        `normalize job ${id} to be ${status}`,
        async () => {
          const record = (await store.get('normalize', id))?.record;
          // Ended otherwise: it never will be, so fail now with what it says.
          if (
            record &&
            record.status !== status &&
            (record.status === 'failed' || record.status === 'completed')
          )
            throw new Error(
              `job ${id} ended ${record.status}: ${JSON.stringify(record.error ?? record.result)}`,
            );
          return record;
        },
        { timeoutMs, intervalMs: 100, until: (r) => r?.status === status },
      );
      return job as JobRecord;
    },
  };
}

/** The four kinds of input `normalize_volume` is held to (see the README's rule for each). */
export const LOUDNESS_KINDS = {
  /** A voice-like tone over soft pink noise, about -40 LUFS, no sharp peaks. */
  quiet: (out: string, seconds = 8) =>
    makeAudio(
      out,
      [
        `aevalsrc=exprs=0.012*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*4*t)):s=48000:d=${seconds}`,
        `anoisesrc=color=pink:amplitude=0.006:sample_rate=48000:duration=${seconds}:seed=5`,
      ],
      '[0][1]amix=inputs=2:normalize=0,pan=stereo|c0=c0|c1=c0[out]',
    ),
  /** Squashed pink noise near full scale, about -7 LUFS. */
  loud: (out: string, seconds = 8) => loudNoise(out, seconds),
  /** Quiet passages (about -50 LUFS) with one loud, fast-decaying noise burst a second (peaks near full scale). */
  dynamic: (out: string, seconds = 8) =>
    makeAudio(
      out,
      [`anoisesrc=color=pink:amplitude=0.5:sample_rate=48000:duration=${seconds}:seed=9`],
      "[0]volume='if(lt(mod(t\\,1)\\,0.3)\\,1.8*exp(-12*mod(t\\,1))\\,0.006)':eval=frame,pan=stereo|c0=c0|c1=c0[out]",
    ),
  /** Near-silent hiss, about -62 LUFS: more than the +30 dB the gain is capped at from the target. */
  nearSilent: (out: string, seconds = 8) =>
    makeAudio(
      out,
      [`anoisesrc=color=pink:amplitude=0.0038:sample_rate=48000:duration=${seconds}:seed=13`],
      '[0]pan=stereo|c0=c0|c1=c0[out]',
    ),
} as const;
