import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** Runs a command with an argument array; rejects with its stderr on a non-zero exit. */
export async function run(
  command: string,
  args: string[],
  timeoutMs = 120_000,
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`));
    });
  });
}

/** Fixtures are made once per machine and kept in the OS temp folder, keyed by their recipe. */
const CACHE_DIR = join(tmpdir(), 'media-jobs-fixtures-v1');

async function cached(name: string, recipe: unknown, make: (out: string) => Promise<void>): Promise<string> {
  const hash = createHash('sha256').update(JSON.stringify(recipe)).digest('hex').slice(0, 12);
  const path = join(CACHE_DIR, hash, name);
  try {
    await stat(path);
    return path;
  } catch {
    // Not made yet.
  }
  const work = join(CACHE_DIR, `${hash}.${process.pid}.${Date.now()}`);
  await mkdir(work, { recursive: true });
  try {
    await make(join(work, name));
    await mkdir(dirname(dirname(path)), { recursive: true });
    await rename(work, dirname(path)).catch(async () => {
      // Another test process made it first: keep theirs.
      await rm(work, { recursive: true, force: true });
    });
  } catch (err) {
    await rm(work, { recursive: true, force: true });
    throw err;
  }
  return path;
}

/** A sine tone made by ffmpeg, mono; the container and codec follow `out`'s extension (wav, mp3 ...). */
export async function makeTone(
  out: string,
  { hz = 440, seconds = 1, sampleRate = 16000 }: { hz?: number; seconds?: number; sampleRate?: number } = {},
): Promise<string> {
  const source = `sine=frequency=${hz}:sample_rate=${sampleRate}:duration=${seconds}`;
  await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', source, out]);
  return out;
}

export interface VideoRecipe {
  width: number;
  height: number;
  seconds: number;
  fps?: number;
}

function videoArgs(r: VideoRecipe): string[] {
  const fps = r.fps ?? 25;
  return [
    '-hide_banner',
    '-loglevel',
    'error',
    '-y',
    '-f',
    'lavfi',
    '-i',
    `testsrc2=size=${r.width}x${r.height}:rate=${fps}:duration=${r.seconds}`,
    '-f',
    'lavfi',
    '-i',
    `sine=frequency=440:sample_rate=48000:duration=${r.seconds}`,
    '-c:v',
    'libx264',
    '-preset',
    'ultrafast',
    '-pix_fmt',
    'yuv420p',
    '-g',
    String(fps),
    '-c:a',
    'aac',
    '-b:a',
    '96k',
    '-ac',
    '2',
  ];
}

/** An H.264/AAC MP4 made by ffmpeg (test pattern and a 440 Hz tone). */
export async function makeMp4(recipe: VideoRecipe): Promise<string> {
  return cached('video.mp4', { kind: 'mp4', ...recipe }, async (out) => {
    await run('ffmpeg', [...videoArgs(recipe), '-movflags', '+faststart', out]);
  });
}

/**
 * An HLS VOD with one rendition per height and a master playlist listing them all
 * (`master.m3u8`), as a streaming site would serve it. Returns the folder.
 */
export async function makeHls(heights: number[], seconds = 4, aspect = 16 / 9): Promise<string> {
  const master = await cached('master.m3u8', { kind: 'hls', heights, seconds, aspect }, async (out) => {
    const dir = dirname(out);
    const lines = ['#EXTM3U', '#EXT-X-VERSION:3'];
    for (const height of heights) {
      const width = Math.round((height * aspect) / 2) * 2;
      const sub = join(dir, `${height}p`);
      await mkdir(sub, { recursive: true });
      await run('ffmpeg', [
        ...videoArgs({ width, height, seconds }),
        '-f',
        'hls',
        '-hls_time',
        '1',
        '-hls_playlist_type',
        'vod',
        '-hls_segment_filename',
        join(sub, 'seg%03d.ts'),
        join(sub, 'index.m3u8'),
      ]);
      const bandwidth = Math.round(width * height * 2.5);
      lines.push(
        `#EXT-X-STREAM-INF:BANDWIDTH=${bandwidth},RESOLUTION=${width}x${height},CODECS="avc1.640028,mp4a.40.2"`,
        `${height}p/index.m3u8`,
      );
    }
    await writeFile(out, `${lines.join('\n')}\n`);
  });
  return dirname(master);
}

export interface ProbeResult {
  streams: {
    codec_type: string;
    codec_name: string;
    width?: number;
    height?: number;
    sample_rate?: string;
    channels?: number;
  }[];
  format: { format_name: string; duration?: string; size?: string };
}

export async function ffprobe(path: string): Promise<ProbeResult> {
  const { stdout } = await run('ffprobe', [
    '-v',
    'error',
    '-print_format',
    'json',
    '-show_streams',
    '-show_format',
    path,
  ]);
  return JSON.parse(stdout) as ProbeResult;
}
