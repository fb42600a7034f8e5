import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AppError,
  createLogger,
  createStorage,
  ensureStorage,
  loadConfig,
  makeWorkDir,
  type JobRecord,
  type JobRun,
  type Storage,
} from '@media-jobs/libs';
import { makeHls, startFixtureServer, type FixtureServer } from '@media-jobs/libs/testing';
import { createDownloadHandler } from '../src/download-job.js';

// The handler alone, without a runner: what it does with its tools and its signal.
let root: string;
let storage: Storage;
let fixtures: FixtureServer;
const logger = createLogger('download-job-test', { logLevel: 'silent' });

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'mj-dl-job-'));
  storage = createStorage(root);
  await ensureStorage(storage);
  fixtures = await startFixtureServer();
  fixtures.mount('hls', await makeHls([1080, 720, 360]));
});

afterAll(async () => {
  await fixtures?.close();
  await rm(root, { recursive: true, force: true });
});

async function jobRun(id: string, request: Record<string, unknown>, signal = new AbortController().signal) {
  const progress: number[] = [];
  const job = { id, kind: 'download', request } as unknown as JobRecord;
  const run: JobRun = {
    job,
    attempt: 1,
    signal,
    workDir: await makeWorkDir(storage, id),
    progress: (p) => void progress.push(p),
  };
  return { run, progress };
}

const handler = (env: Record<string, string> = {}) =>
  // The fixtures are on 127.0.0.1: without ALLOW_PRIVATE_URLS the egress proxy would refuse them.
  createDownloadHandler({
    config: loadConfig({ DATA_DIR: root, ALLOW_PRIVATE_URLS: 'true', ...env }),
    storage,
    logger,
  });

describe('download handler', () => {
  it('when yt-dlp is not installed, then the run fails with a retryable tool.missing error', async () => {
    const { run } = await jobRun('missing_best', {
      url: `${fixtures.origin}/hls/master.m3u8`,
      quality: 'best',
    });
    const err = await handler({ YTDLP_PATH: join(root, 'no-such-yt-dlp') })(run).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: 'tool.missing', retryable: true });
  });

  it('when the request holds an option instead of a URL, then yt-dlp never runs and the error is final', async () => {
    const { run } = await jobRun('opt_best', { url: '--exec=touch /tmp/x', quality: 'best' });
    const err = await handler({ YTDLP_PATH: join(root, 'no-such-yt-dlp') })(run).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'download.invalid_request', retryable: false });
  });

  it('when the run is aborted mid-download, then yt-dlp is stopped at once and nothing reaches downloads/', async () => {
    fixtures.throttle(100_000);
    const controller = new AbortController();
    const { run, progress } = await jobRun(
      'abort_360p',
      { url: `${fixtures.origin}/hls/master.m3u8`, quality: '360p' },
      controller.signal,
    );
    const pending = handler()(run).catch((e: unknown) => e);
    await expect.poll(() => fixtures.count('/hls/360p/seg000.ts'), { timeout: 20_000 }).toBe(1);
    const abortedAt = Date.now();
    controller.abort('shutdown');
    const err = await pending;
    expect(Date.now() - abortedAt).toBeLessThan(3000);
    expect(err).toMatchObject({ code: 'download.aborted' });
    expect(progress[0]).toBe(0);
    expect(await readdir(storage.downloads)).toEqual([]);
    fixtures.throttle(0);
  });
});
