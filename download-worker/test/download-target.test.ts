import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLogger,
  createStorage,
  downloadFetchUrl,
  ensureStorage,
  loadConfig,
  makeWorkDir,
  type JobRecord,
  type Storage,
} from '@media-jobs/libs';
import { createDownloadHandler } from '../src/download-job.js';
import { buildYtDlpArgs } from '../src/yt-dlp.js';

// What yt-dlp is given for a YouTube id, seen from the egress proxy: every name yt-dlp asks
// for is answered with 127.0.0.1, which the proxy refuses, so nothing leaves this machine.
let root: string;
let storage: Storage;
const logger = createLogger('download-target-test', { logLevel: 'silent' });
const ID = 'jNQXAC9IVRw';

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'mj-dl-target-'));
  storage = createStorage(root);
  await ensureStorage(storage);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function runFor(id: string, url: string) {
  return {
    job: { id, kind: 'download', request: { url, quality: 'best' } } as unknown as JobRecord,
    attempt: 1,
    signal: new AbortController().signal,
    workDir: await makeWorkDir(storage, id),
    progress: () => undefined,
  };
}

describe('what the download worker fetches', () => {
  it('when a YouTube id is built into yt-dlp arguments, then it is the watch URL after --, with --no-playlist', () => {
    const url = downloadFetchUrl(`${ID}_best`, `https://yewtu.be/embed/${ID}?list=PL123`);
    const args = buildYtDlpArgs({ url, quality: 'best', workDir: '/w', ffmpegPath: 'ffmpeg' });
    expect(args).toContain('--no-playlist');
    expect(args.slice(-2)).toEqual(['--', `https://www.youtube.com/watch?v=${ID}`]);
  });

  it.each([
    `https://yewtu.be/watch?v=${ID}&list=PLsyOSbh5bs16vubvKePAQ1x3PhKavfBIl`,
    `https://www.youtube.com/#!v=${ID}`,
    // A record that names another site under a YouTube id still fetches that id.
    'https://video.example/another-clip.mp4',
  ])(
    'when a job with a YouTube id holds %s, then yt-dlp asks for www.youtube.com only',
    async (url) => {
      const asked: string[] = [];
      const handler = createDownloadHandler({
        config: loadConfig({ DATA_DIR: root, ALLOW_PRIVATE_URLS: 'false' }),
        storage,
        logger,
        egress: {
          resolve: async (host) => {
            asked.push(host);
            return ['127.0.0.1'];
          },
        },
      });
      const id = `${ID}_best`;
      const err = await handler(await runFor(id, url)).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'download.private_url', retryable: false });
      expect((err as Error).message).toContain('www.youtube.com');
      expect(asked.length).toBeGreaterThan(0);
      expect(new Set(asked)).toEqual(new Set(['www.youtube.com']));
    },
    60_000,
  );
});
