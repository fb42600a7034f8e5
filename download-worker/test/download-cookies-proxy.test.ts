import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  COOKIES_COPY_NAME,
  createLogger,
  createStorage,
  deleteCookies,
  ensureStorage,
  loadConfig,
  makeWorkDir,
  putCookies,
  type JobRecord,
  type JobRun,
} from '@media-jobs/libs';
import { makeMp4 } from '@media-jobs/libs/testing';
import { createDownloadHandler } from '../src/download-job.js';
import { startDownloadWorker, type DownloadWorker } from '../src/worker.js';
import { startLoopbackProxy, type LoopbackProxy } from './loopback-proxy.js';
import { startTestBed, type TestBed } from './test-bed.js';

let bed: TestBed;
let worker: DownloadWorker | undefined;
let proxy: LoopbackProxy;
let scratch: string;
let mp4Name: string;
const logLines: string[] = [];

const FILE_SECRET = 'file-secret-0f1e2d3c4b5a';
const REDIS_SECRET = 'redis-secret-a5b4c3d2e1f0';
const cookiesTxt = (value: string) =>
  `# Netscape HTTP Cookie File\n# exported for a test\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\t${value}\n`;

beforeAll(async () => {
  bed = await startTestBed();
  proxy = await startLoopbackProxy();
  scratch = await mkdtemp(join(tmpdir(), 'mj-cookies-'));
  const mp4 = await makeMp4({ width: 320, height: 240, seconds: 1 });
  mp4Name = basename(mp4);
  bed.fixtures.mount('mp4', dirname(mp4));
});

afterEach(async () => {
  await worker?.stop();
  worker = undefined;
  await deleteCookies(bed.redis);
});

afterAll(async () => {
  await proxy?.close();
  await bed?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** A worker whose every log line (debug included: yt-dlp's own lines) is kept for inspection. */
async function startWorker(env: Record<string, string>): Promise<void> {
  const config = bed.platform.config({ LOG_LEVEL: 'debug', ...env });
  const logger = createLogger('download-worker', config, {
    write: (line: string) => void logLines.push(line),
  });
  worker = await startDownloadWorker(config, logger);
}

async function expectNoCopyLeft(secret: string, id: string): Promise<void> {
  expect(await bed.files('tmp')).toEqual([]);
  const downloads = await bed.files('downloads');
  expect(downloads.some((n) => n.includes('cookies'))).toBe(false);
  expect(await bed.redis.get(`job:${id}`)).not.toContain(secret);
  expect(logLines.join('')).not.toContain(secret);
}

describe('cookies', () => {
  it('when YTDLP_COOKIES_FILE is set, then the site gets its cookies, the file is unchanged, and no log, record or folder holds them', async () => {
    const file = join(scratch, 'cookies.txt');
    await writeFile(file, cookiesTxt(FILE_SECRET));
    await startWorker({ YTDLP_COOKIES_FILE: file });
    const before = bed.fixtures.seen.length;
    const { id } = await bed.submit(`${bed.fixtures.origin}/mp4/${mp4Name}?cookies=file`, 'best');
    const record = await bed.waitFor(id, ['completed', 'failed']);
    expect(record.status).toBe('completed');
    const served = bed.fixtures.seen.slice(before).filter((r) => r.path === `/mp4/${mp4Name}`);
    expect(served.length).toBeGreaterThan(0);
    for (const r of served) expect(r.headers.cookie).toContain(`session=${FILE_SECRET}`);
    // yt-dlp wrote its jar back to the private copy, not to the operator's file.
    expect(await readFile(file, 'utf8')).toBe(cookiesTxt(FILE_SECRET));
    await expectNoCopyLeft(FILE_SECRET, id);
  });

  it('when cookies were PUT into Redis, then they win over YTDLP_COOKIES_FILE', async () => {
    const file = join(scratch, 'cookies.txt');
    await writeFile(file, cookiesTxt(FILE_SECRET));
    await putCookies(bed.redis, cookiesTxt(REDIS_SECRET));
    await startWorker({ YTDLP_COOKIES_FILE: file });
    const before = bed.fixtures.seen.length;
    const { id } = await bed.submit(`${bed.fixtures.origin}/mp4/${mp4Name}?cookies=redis`, 'best');
    expect((await bed.waitFor(id, ['completed', 'failed'])).status).toBe('completed');
    const served = bed.fixtures.seen.slice(before).filter((r) => r.path === `/mp4/${mp4Name}`);
    expect(served.length).toBeGreaterThan(0);
    for (const r of served) {
      expect(r.headers.cookie).toContain(`session=${REDIS_SECRET}`);
      expect(r.headers.cookie).not.toContain(FILE_SECRET);
    }
    await expectNoCopyLeft(REDIS_SECRET, id);
  });

  it('when no cookies are configured, then none is sent', async () => {
    await startWorker({});
    const before = bed.fixtures.seen.length;
    const { id } = await bed.submit(`${bed.fixtures.origin}/mp4/${mp4Name}?cookies=none`, 'best');
    expect((await bed.waitFor(id, ['completed', 'failed'])).status).toBe('completed');
    const served = bed.fixtures.seen.slice(before);
    expect(served.length).toBeGreaterThan(0);
    expect(served.filter((r) => r.headers.cookie)).toEqual([]);
  });
});

describe('YTDLP_PROXY', () => {
  it('when private URLs are allowed, then yt-dlp talks to the site through YTDLP_PROXY itself', async () => {
    await startWorker({ YTDLP_PROXY: proxy.url });
    const before = proxy.seen.length;
    const url = `${bed.fixtures.origin}/mp4/${mp4Name}?proxy=direct`;
    const { id } = await bed.submit(url, 'best');
    expect((await bed.waitFor(id, ['completed', 'failed'])).status).toBe('completed');
    const targets = proxy.seen.slice(before).map((r) => r.target);
    expect(targets).toContain(url);
  });

  it('when private URLs are refused, then the egress proxy checks each target and chains to YTDLP_PROXY, and a refused one never reaches it', async () => {
    const root = await mkdtemp(join(scratch, 'handler-'));
    const storage = createStorage(root);
    await ensureStorage(storage);
    const handler = createDownloadHandler({
      config: loadConfig({
        DATA_DIR: root,
        ALLOW_PRIVATE_URLS: 'false',
        YTDLP_PROXY: proxy.url.replace('http://', 'http://ops:pa%3Ass@'),
      }),
      storage,
      logger: createLogger('download-job-test', { logLevel: 'silent' }),
      // The fixtures are on 127.0.0.1: this policy lets that one address through, no other.
      egress: { allowAddress: (address) => address === '127.0.0.1' },
    });
    const run = async (id: string, url: string): Promise<JobRun> => ({
      job: { id, kind: 'download', request: { url, quality: 'best' } } as unknown as JobRecord,
      attempt: 1,
      signal: new AbortController().signal,
      workDir: await makeWorkDir(storage, id),
      progress: () => undefined,
    });

    const before = proxy.seen.length;
    const url = `${bed.fixtures.origin}/mp4/${mp4Name}?proxy=chained`;
    const out = await handler(await run('uchained000000001_best', url));
    expect(out.result).toMatchObject({ file: 'uchained000000001_best.mp4' });
    const seen = proxy.seen.slice(before);
    expect(seen.map((r) => r.target)).toContain(url);
    // Credentials of YTDLP_PROXY go to the upstream as Basic auth.
    expect(seen[0]?.proxyAuthorization).toBe(`Basic ${Buffer.from('ops:pa:ss').toString('base64')}`);

    const refusedBefore = proxy.seen.length;
    const port = new URL(bed.fixtures.origin).port;
    const err = await handler(
      await run('urefused000000001_best', `http://127.0.0.2:${port}/mp4/${mp4Name}`),
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'download.private_url' });
    expect(proxy.seen.slice(refusedBefore)).toEqual([]);
    expect((await readdir(storage.tmp)).filter((n) => n.includes(COOKIES_COPY_NAME))).toEqual([]);
  });
});
