import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadResultSchema } from '@media-jobs/libs';
import { ffprobe, makeHls, makeMp4 } from '@media-jobs/libs/testing';
import { startDownloadWorker, type DownloadWorker } from '../src/worker.js';
import { startTestBed, type TestBed } from './test-bed.js';

let bed: TestBed;
let worker: DownloadWorker;

beforeAll(async () => {
  bed = await startTestBed();
  const [hls, portrait, mp4] = await Promise.all([
    makeHls([1080, 720, 360]),
    // 720x1280, 480x854, 360x640: the quality bound applies to the width here.
    makeHls([1280, 854, 640], 2, 9 / 16),
    makeMp4({ width: 640, height: 360, seconds: 3 }),
  ]);
  bed.fixtures.mount('hls', hls);
  bed.fixtures.mount('portrait', portrait);
  bed.fixtures.mount('mp4', dirname(mp4));
  worker = await startDownloadWorker(bed.platform.config({ DOWNLOAD_CONCURRENCY: '2' }));
});

afterAll(async () => {
  await worker?.stop();
  await bed?.close();
});

const downloaded = (file: unknown) => join(bed.platform.dataDir, 'downloads', String(file));

/** The result is what the gateway documents, with no field left out of the schema. */
function expectDocumentedResult(result: unknown): void {
  expect(downloadResultSchema.parse(result)).toEqual(result);
}

async function videoStreams(file: unknown) {
  const probe = await ffprobe(downloaded(file));
  return probe.streams.filter((s) => s.codec_type === 'video');
}

describe('download worker', () => {
  it.each([
    ['720p', 720],
    ['480p', 360],
    ['best', 1080],
    ['worst', 360],
    // Nothing at or below 240 lines: the smallest rendition rather than a failed job.
    ['240p', 360],
  ] as const)(
    'when an HLS master with 1080/720/360 is asked for %s, then the file has %i lines',
    async (quality, lines) => {
      const { id } = await bed.submit(`${bed.fixtures.origin}/hls/master.m3u8`, quality);
      const record = await bed.waitFor(id, ['completed', 'failed']);
      expect(record.error).toBeUndefined();
      expect(record.result).toMatchObject({ file: `${id}.mp4`, height: lines, quality, video_codec: 'h264' });
      expectDocumentedResult(record.result);
      const [video] = await videoStreams(record.result?.file);
      expect(video?.height).toBe(lines);
    },
  );

  it('when a portrait video is asked for 480p, then the shorter side (width) is 480', async () => {
    const { id } = await bed.submit(`${bed.fixtures.origin}/portrait/master.m3u8`, '480p');
    const record = await bed.waitFor(id, ['completed', 'failed']);
    expect(record.result).toMatchObject({ width: 480, height: 854 });
    const [video] = await videoStreams(record.result?.file);
    expect([video?.width, video?.height]).toEqual([480, 854]);
  });

  it('when audio is asked for, then the file has an audio stream and no video stream', async () => {
    const { id } = await bed.submit(`${bed.fixtures.origin}/hls/master.m3u8`, 'audio');
    const record = await bed.waitFor(id, ['completed', 'failed']);
    expect(record.result).toMatchObject({ width: null, height: null, video_codec: null, audio_codec: 'aac' });
    expectDocumentedResult(record.result);
    const probe = await ffprobe(downloaded(record.result?.file));
    expect(probe.streams.map((s) => s.codec_type)).toEqual(['audio']);
  });

  it('when a plain MP4 URL is downloaded, then the result describes the file on disk', async () => {
    const { id, events } = await bed.submit(`${bed.fixtures.origin}/mp4/video.mp4`, 'best');
    const record = await bed.waitFor(id, ['completed', 'failed']);
    const probe = await ffprobe(downloaded(record.result?.file));
    expect(record).toMatchObject({ status: 'completed', progress: 100, attempts: 1 });
    expect(record.result).toMatchObject({
      file: `${id}.mp4`,
      size_bytes: Number(probe.format.size),
      width: 640,
      height: 360,
      container: 'mp4',
      video_codec: 'h264',
      audio_codec: 'aac',
      format_id: expect.any(String),
    });
    expect(record.result?.duration_s).toBeCloseTo(3, 0);
    expectDocumentedResult(record.result);
    await expect
      .poll(() => events.map((e) => e.type).filter((t) => t !== 'progress'))
      .toEqual(['started', 'completed']);
    expect(await bed.files('tmp')).toEqual([]);
  });

  it('when a job completes, then the Redis TTL agrees with expires_at, a full TTL from completion', async () => {
    const { id } = await bed.submit(`${bed.fixtures.origin}/hls/master.m3u8?ttl`, '360p');
    const record = await bed.waitFor(id, ['completed', 'failed']);
    const pttl = await bed.redis.pttl(`job:${id}`);
    const left = Date.parse(record.expires_at) - Date.now();
    expect(Math.abs(pttl - left)).toBeLessThan(1000);
    const ttlMs = bed.platform.config().cacheTtlMs;
    expect(Math.abs(Date.parse(record.expires_at) - Date.parse(record.updated_at) - ttlMs)).toBeLessThan(
      1000,
    );
  });

  it('when a download takes a few seconds, then progress events arrive, rise, and come at most a few a second', async () => {
    bed.fixtures.throttle(400_000);
    try {
      const { id, events } = await bed.submit(`${bed.fixtures.origin}/hls/master.m3u8?progress`, '360p');
      const record = await bed.waitFor(id, ['completed', 'failed']);
      expect(record.status).toBe('completed');
      const progress = events.flatMap((e) => (e.type === 'progress' ? [e] : []));
      expect(progress.length).toBeGreaterThanOrEqual(4);
      const values = progress.map((e) => e.progress);
      expect(values).toEqual([...values].sort((a, b) => a - b));
      const gaps = progress.slice(1).map((e, i) => Date.parse(e.at) - Date.parse(progress[i]!.at));
      expect(Math.min(...gaps)).toBeGreaterThanOrEqual(200);
      const spanS = (Date.parse(progress.at(-1)!.at) - Date.parse(progress[0]!.at)) / 1000;
      expect(progress.length / Math.max(1, spanS)).toBeLessThanOrEqual(5);
    } finally {
      bed.fixtures.throttle(0);
    }
  });
});
