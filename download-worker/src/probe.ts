import { AppError, runProcess, type DownloadResult } from '@media-jobs/libs';

/** What a user needs to know about a downloaded file, as ffprobe measured it: part of the job's result. */
export type MediaInfo = Pick<
  DownloadResult,
  'duration_s' | 'width' | 'height' | 'video_codec' | 'audio_codec'
>;

interface ProbeJson {
  streams?: {
    codec_type?: string;
    codec_name?: string;
    width?: number;
    height?: number;
    duration?: string;
    disposition?: { attached_pic?: number };
  }[];
  format?: { duration?: string };
}

export function ffprobeArgs(path: string): string[] {
  return ['-v', 'error', '-print_format', 'json', '-show_streams', '-show_format', path];
}

/** Reduces ffprobe's JSON to `MediaInfo`; cover art in an audio file is not a video stream. */
export function mediaInfo(probe: ProbeJson): MediaInfo {
  const streams = probe.streams ?? [];
  const video = streams.find((s) => s.codec_type === 'video' && s.disposition?.attached_pic !== 1);
  const audio = streams.find((s) => s.codec_type === 'audio');
  const duration = Number(probe.format?.duration ?? video?.duration ?? audio?.duration);
  return {
    duration_s: Number.isFinite(duration) ? Math.round(duration * 1000) / 1000 : null,
    width: video?.width ?? null,
    height: video?.height ?? null,
    video_codec: video?.codec_name ?? null,
    audio_codec: audio?.codec_name ?? null,
  };
}

/** Runs ffprobe on a file we wrote; a file it cannot read is not a usable result. */
export async function probeMedia(ffprobePath: string, path: string, signal: AbortSignal): Promise<MediaInfo> {
  let stdout = '';
  const res = await runProcess(ffprobePath, ffprobeArgs(path), {
    signal,
    timeoutMs: 60_000,
    onStdoutLine: (line) => (stdout += `${line}\n`),
  });
  if (res.aborted) throw new AppError('download.aborted', 'the job was stopped while probing the file');
  if (res.code !== 0) {
    const reason = res.stderr.trim().split('\n').at(-1) ?? `exit code ${res.code}`;
    throw new AppError('download.invalid_media', `the downloaded file is not readable media: ${reason}`);
  }
  try {
    return mediaInfo(JSON.parse(stdout) as ProbeJson);
  } catch (err) {
    throw new AppError('download.invalid_media', 'ffprobe gave output that is not JSON', { cause: err });
  }
}
