import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import {
  ffprobe,
  makeMp4,
  makeTone,
  run,
  startFixtureServer,
  startPlatform,
  type FixtureServer,
  type Platform,
} from '@media-jobs/libs/testing';
import { startDownloadWorker, type DownloadWorker } from '../../download-worker/src/worker.js';
import { startNormalizeWorker, type NormalizeWorker } from '../../normalize-worker/src/worker.js';
import { buildConsole } from '../console/build.js';
import { startGateway, type Gateway } from '../src/gateway.js';
import { CONSOLE_CONTENT_SECURITY_POLICY } from '../src/security-headers.js';

/** Debian's chromium (scripts/setup.sh installs it); playwright-core never downloads a browser. */
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCREENSHOTS = fileURLToPath(new URL('./screenshots/', import.meta.url));
const API_KEY = 'console-test-key-0123456789abcdef';
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const NBSP = '\u00a0';

let platform: Platform;
let fixtures: FixtureServer;
let gateway: Gateway;
let keyed: Gateway;
let downloads: DownloadWorker;
let normalizer: NormalizeWorker;
let browser: BrowserContext;
let work: string;
let speech: string;
/** Every URL the browser asked for, and what went wrong in a page (script errors, CSP refusals). */
const requested: string[] = [];
let problems: string[] = [];

beforeAll(async () => {
  // The console as `npm run build` makes it: the gateway serves gateway/dist/console.
  await buildConsole();
  platform = await startPlatform();
  fixtures = await startFixtureServer();
  fixtures.mount('mp4', join(await makeMp4({ width: 640, height: 360, seconds: 6 }), '..'));
  // A short grace: a stream the closed browser left behind does not hold the teardown for 25 s.
  gateway = await startGateway(platform.config({ SHUTDOWN_GRACE_SECONDS: '2' }));
  keyed = await startGateway(platform.config({ SHUTDOWN_GRACE_SECONDS: '2', API_KEYS: API_KEY }));
  // One delivery: a job that fails shows its error at once instead of after retries.
  const workerConfig = platform.config({ JOB_MAX_DELIVER: '1' });
  downloads = await startDownloadWorker(workerConfig);
  normalizer = await startNormalizeWorker(workerConfig);
  work = await mkdtemp(join(tmpdir(), 'mj-console-'));
  speech = join(work, 'quiet talk.mp3');
  await run('ffmpeg', [
    ...['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i'],
    'aevalsrc=exprs=0.03*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*3*t)):s=44100:d=4',
    ...['-ac', '2', '-c:a', 'libmp3lame', speech],
  ]);
  await mkdir(SCREENSHOTS, { recursive: true });
  browser = await chromium.launchPersistentContext(await mkdtemp(join(work, 'profile-')), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-gpu',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: DESKTOP,
    acceptDownloads: true,
  });
  browser.on('request', (req) => void requested.push(req.url()));
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await downloads?.stop();
  await normalizer?.stop();
  await gateway?.stop();
  await keyed?.stop();
  await fixtures?.close();
  await platform?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

afterEach(() => {
  fixtures.throttle(0);
  // No script error and no refusal by the page's policy in any test.
  expect(problems).toEqual([]);
  problems = [];
});

async function openConsole(base = gateway.url, size = DESKTOP): Promise<Page> {
  const page = await browser.newPage();
  await page.setViewportSize(size);
  page.on('pageerror', (err) => void problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (/Content Security Policy|Trusted Type|Refused to/i.test(msg.text())) problems.push(msg.text());
  });
  await page.goto(base);
  await page.locator('#job-list').waitFor({ state: 'attached' });
  return page;
}

const text = (locator: Locator) => () => locator.textContent();
const poll = { timeout: 60_000, interval: 100 };

async function answerId(answer: Locator): Promise<string> {
  await expect.poll(text(answer), poll).toMatch(/(New job|Cache hit)/);
  return (await answer.getByRole('link').first().textContent()) ?? '';
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function record(id: string, base = gateway.url): Promise<any> {
  return (await fetch(`${base}/jobs/${id}`)).json();
}

async function statusOf(id: string, base = gateway.url): Promise<number> {
  const res = await fetch(`${base}/jobs/${id}`);
  await res.arrayBuffer();
  return res.status;
}

/** Samples a row's progress bar until it is full; resolves to every value it showed on the way. */
async function watchProgress(bar: Locator): Promise<number[]> {
  const seen: number[] = [];
  await expect
    .poll(
      async () => {
        const value = Number(await bar.getAttribute('value'));
        if (seen.at(-1) !== value) seen.push(value);
        return value;
      },
      { timeout: 60_000, interval: 25 },
    )
    .toBe(100);
  return seen;
}

async function shoot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

async function noSideScroll(page: Page): Promise<void> {
  const [scroll, width] = (await page.evaluate(
    '[document.documentElement.scrollWidth, window.innerWidth]',
  )) as number[];
  expect(scroll).toBeLessThanOrEqual(width!);
}

describe('the web console', () => {
  it('when / is fetched, then it is the console page under a strict policy, with only its own assets', async () => {
    const res = await fetch(`${gateway.url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    const policy = res.headers.get('content-security-policy') ?? '';
    expect(policy).toBe(CONSOLE_CONTENT_SECURITY_POLICY);
    expect(policy).toContain("script-src 'self'");
    expect(policy).toContain("style-src 'self'");
    expect(policy).not.toContain('unsafe');
    const html = await res.text();
    // No inline script or style anywhere: every script has a src, no style element or attribute.
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/<style|\sstyle=/);
    const refs = [...html.matchAll(/\s(?:src|href)="([^"]*)"/g)].map((m) => m[1]!);
    expect(refs).toEqual(expect.arrayContaining(['/console/app.js', '/console/app.css']));
    for (const ref of refs) expect(ref, ref).toMatch(/^(\/(?!\/)|#)/);
    for (const [asset, type] of [
      ['app.js', /javascript/],
      ['app.css', /text\/css/],
      ['icon.svg', /svg/],
    ] as const) {
      const answer = await fetch(`${gateway.url}/console/${asset}`);
      expect(answer.status, asset).toBe(200);
      expect(answer.headers.get('content-type'), asset).toMatch(type);
      expect((await answer.arrayBuffer()).byteLength, asset).toBeGreaterThan(100);
    }
    for (const path of ['/console/build.ts', '/console/..%2Fpackage.json', '/console/main.ts']) {
      const res = await fetch(`${gateway.url}${path}`);
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as any).error.code).toBe('route.not_found');
    }
  });

  it('when a download of a local file is submitted, then the new job shows at once, its bar moves live to 100 % and the Download button saves the file', async () => {
    const page = await openConsole();
    // A few seconds of downloading (yt-dlp reads the 1.5 MB file twice), so the bar has steps to show.
    fixtures.throttle(600_000);
    await page.getByLabel('Video or page URL').fill(`${fixtures.origin}/mp4/video.mp4?console=1`);
    await page.getByLabel('Quality').selectOption('360p');
    await page.getByRole('button', { name: 'Download', exact: true }).click();
    const answer = page.locator('#download-answer');
    const id = await answerId(answer);
    expect(id).toMatch(/^u[0-9a-f]{16}_360p$/);
    expect(await answer.textContent()).toContain(`New job queued: ${id}`);

    const row = page.locator(`li.job[data-id="${id}"]`);
    const seen = await watchProgress(row.getByRole('progressbar'));
    // Steps between 0 and 100: the stream moved it (the list itself refreshes every 10 s only).
    expect(
      seen.some((v) => v > 0 && v < 100),
      `seen ${seen.join(', ')}`,
    ).toBe(true);
    await expect.poll(text(row.locator('.pct')), poll).toBe(`100${NBSP}%`);
    await expect.poll(text(row.locator('.status')), poll).toBe('completed');
    await expect.poll(text(row.locator('.expiry')), poll).toMatch(/^23\sh 59\smin left$/);

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      row.getByRole('link', { name: `Download ${id}` }).click(),
    ]);
    expect(download.suggestedFilename()).toBe(`${id}.mp4`);
    const saved = join(work, download.suggestedFilename());
    await download.saveAs(saved);
    const bytes = await readFile(saved);
    const job = await record(id);
    expect(bytes.length).toBe(job.result.size_bytes);
    const served = new Uint8Array(await (await fetch(`${gateway.url}/jobs/${id}/file`)).arrayBuffer());
    expect(sha256(bytes)).toBe(sha256(served));
    expect((await ffprobe(saved)).streams.find((s) => s.codec_type === 'video')?.height).toBe(360);
    await page.close();
  });

  it('when a job page is opened while it runs, then its events arrive live and its media facts appear at the end', async () => {
    const page = await openConsole();
    fixtures.throttle(600_000);
    await page.getByLabel('Video or page URL').fill(`${fixtures.origin}/mp4/video.mp4?console=2`);
    await page.getByLabel('Quality').selectOption('240p');
    await page.getByRole('button', { name: 'Download', exact: true }).click();
    const answer = page.locator('#download-answer');
    const id = await answerId(answer);
    await answer.getByRole('link', { name: id }).click();
    await expect.poll(() => page.url()).toBe(`${gateway.url}/#/jobs/${id}`);
    const view = page.locator('#job-view');
    await expect.poll(text(view.getByRole('heading', { level: 2 })), poll).toBe(`Job ${id}`);

    const events = view.locator('ol.events li');
    await expect.poll(text(view.locator('.status')), poll).toBe('completed');
    const types = await events.evaluateAll((items) => items.map((li) => li.getAttribute('data-type')));
    expect(types[0]).toBe('state');
    expect(types).toContain('progress');
    expect(types.at(-1)).toBe('completed');
    expect(await view.getByRole('progressbar').getAttribute('value')).toBe('100');

    // The media facts of the result, and the record itself.
    const facts = view.locator('dl.facts');
    await expect.poll(text(facts), poll).toContain('Resolution');
    const job = await record(id);
    expect(await facts.textContent()).toContain(`${job.result.width} × ${job.result.height}`);
    expect(await facts.textContent()).toContain(job.result.video_codec);
    expect(await facts.textContent()).toContain(job.result.container);
    await expect
      .poll(async () => JSON.parse((await view.locator('pre.record').textContent()) ?? '{}').status)
      .toBe('completed');
    await expect.poll(() => view.getByRole('link', { name: /^Download the file/ }).count()).toBe(1);
    await shoot(page, 'desktop-job-download');
    await page.setViewportSize(PHONE);
    await noSideScroll(page);
    await shoot(page, 'phone-job-download');

    // Back to the list from the keyboard: the link is reachable and Enter follows it.
    await view.getByRole('link', { name: '← All jobs' }).focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('#home-view').isVisible()).toBe(true);
    await page.close();
  });

  it('when the same download is submitted again from the keyboard, then the answer says cache hit and offers the file', async () => {
    const source = `${fixtures.origin}/mp4/video.mp4?console=again`;
    const first = await fetch(`${gateway.url}/download`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: source, quality: '360p' }),
    });
    const { id: existing } = (await first.json()) as any;
    await expect.poll(async () => (await record(existing)).status, poll).toBe('completed');
    const page = await openConsole();
    const url = page.getByLabel('Video or page URL');
    await url.focus();
    await page.keyboard.type(source);
    await page.keyboard.press('Tab');
    await expect.poll(() => page.locator(':focus').getAttribute('id')).toBe('download-quality');
    await page.getByLabel('Quality').selectOption('360p');
    await page.keyboard.press('Tab');
    await expect.poll(text(page.locator(':focus'))).toBe('Download');
    await page.keyboard.press('Enter');
    const answer = page.locator('#download-answer');
    expect(await answerId(answer)).toBe(existing);
    expect(await answer.textContent()).toContain(
      `Cache hit: this job already exists (completed): ${existing}`,
    );
    await expect.poll(() => answer.getByRole('link', { name: 'Download the file' }).count()).toBe(1);
    await page.close();
  });

  it('when a file is uploaded for normalization, then its bar reaches 100 % and its page shows the loudness before and after', async () => {
    const page = await openConsole();
    await page.getByLabel(/Audio or video file/).setInputFiles(speech);
    await page.getByLabel('Remove noise').check();
    await page.getByLabel('Output format').selectOption('mp3');
    await page.getByLabel('Target loudness (LUFS)').fill('-20');
    await page.getByRole('button', { name: 'Normalize', exact: true }).click();
    const answer = page.locator('#normalize-answer');
    const id = await answerId(answer);
    expect(id).toMatch(/^[0-9a-f]{16}_/);
    expect(await answer.textContent()).toContain('New job queued');

    const row = page.locator(`li.job[data-id="${id}"]`);
    expect(await row.locator('.job-title').textContent()).toBe('quiet talk.mp3');
    await watchProgress(row.getByRole('progressbar'));
    await expect.poll(text(row.locator('.status')), poll).toBe('completed');

    await row.getByRole('link', { name: 'quiet talk.mp3' }).click();
    const view = page.locator('#job-view');
    const table = view.getByRole('table', { name: 'Loudness before and after' });
    await table.waitFor();
    const job = await record(id);
    const { loudness } = job.result;
    const cell = async (row: string, col: number) =>
      (await table
        .getByRole('row', { name: new RegExp(`^${row}`) })
        .getByRole('cell')
        .nth(col)
        .textContent()) ?? '';
    expect(await cell('Integrated', 0)).toBe(`${loudness.input.integrated_lufs.toFixed(1)}${NBSP}LUFS`);
    expect(await cell('Integrated', 1)).toBe(`${loudness.output.integrated_lufs.toFixed(1)}${NBSP}LUFS`);
    expect(await cell('True peak', 1)).toBe(`${loudness.output.true_peak_dbtp.toFixed(1)}${NBSP}dBTP`);
    expect(Math.abs(loudness.output.integrated_lufs - -20)).toBeLessThan(1.5);
    const facts = await view.locator('section.details').textContent();
    expect(facts).toContain(`-20.0${NBSP}LUFS`);
    expect(facts).toContain(`+${loudness.gain_db.toFixed(1)}${NBSP}dB`);
    await expect.poll(() => view.locator('audio').getAttribute('src')).toBe(`/jobs/${id}/file`);
    await shoot(page, 'desktop-job-normalize');
    await page.setViewportSize(PHONE);
    await noSideScroll(page);
    await shoot(page, 'phone-job-normalize');

    // The same file with the same operations is the same job.
    await page.goto(`${gateway.url}/#/`);
    await page.setViewportSize(DESKTOP);
    await page.getByLabel(/Audio or video file/).setInputFiles(speech);
    await page.getByLabel('Remove noise').check();
    await page.getByLabel('Output format').selectOption('mp3');
    await page.getByLabel('Target loudness (LUFS)').fill('-20');
    await page.getByRole('button', { name: 'Normalize', exact: true }).click();
    expect(await answerId(answer)).toBe(id);
    expect(await answer.textContent()).toContain('Cache hit');
    await page.close();
  });

  it('when a job fails, then the list shows its error message', async () => {
    const page = await openConsole();
    const notAudio = join(work, 'notes.txt');
    await writeFile(notAudio, 'these are not the sounds you are looking for\n'.repeat(50));
    await page.getByLabel(/Audio or video file/).setInputFiles(notAudio);
    await page.getByRole('button', { name: 'Normalize', exact: true }).click();
    const id = await answerId(page.locator('#normalize-answer'));
    const row = page.locator(`li.job[data-id="${id}"]`);
    await expect.poll(text(row.locator('.status')), poll).toBe('failed');
    const job = await record(id);
    expect(job.status).toBe('failed');
    await expect
      .poll(text(row.locator('.job-error')), poll)
      .toBe(`${job.error.message.charAt(0).toUpperCase()}${job.error.message.slice(1)} (${job.error.code})`);
    await expect.poll(() => row.getByRole('link', { name: /^Download/ }).isVisible()).toBe(false);
    await page.close();
  });

  it('when bad input is submitted, then a clear message says what is wrong', async () => {
    const page = await openConsole();
    const download = page.locator('#download-answer');
    await page.getByRole('button', { name: 'Download', exact: true }).click();
    await expect
      .poll(text(download.getByRole('alert')))
      .toBe('Enter the URL of a video or of a page that has one.');
    await expect.poll(() => page.locator(':focus').getAttribute('id')).toBe('download-url');

    await page.getByLabel('Video or page URL').fill('not a url');
    await page.getByRole('button', { name: 'Download', exact: true }).click();
    await expect
      .poll(text(download.getByRole('alert')))
      .toBe('Not accepted: url is not a valid absolute URL. (download.invalid_url)');

    const normalize = page.locator('#normalize-answer');
    await page.getByRole('button', { name: 'Normalize', exact: true }).click();
    await expect.poll(text(normalize.getByRole('alert'))).toBe('Choose an audio or video file to normalize.');

    await page.getByLabel(/Audio or video file/).setInputFiles(speech);
    await page.getByLabel('Normalize loudness').uncheck();
    expect(await page.getByLabel('Target loudness (LUFS)').isDisabled()).toBe(true);
    await page.getByRole('button', { name: 'Normalize', exact: true }).click();
    await expect
      .poll(text(normalize.getByRole('alert')))
      .toMatch(/^Not accepted: at least one operation is required/);

    await page.getByLabel('Normalize loudness').check();
    await page.getByLabel('Target loudness (LUFS)').fill('-100');
    await page.getByRole('button', { name: 'Normalize', exact: true }).click();
    await expect
      .poll(text(normalize.getByRole('alert')))
      .toBe('Not accepted: target_lufs must be a number from -70 to -5. (normalize.invalid_target)');
    await shoot(page, 'desktop-bad-input');
    await page.close();
  });

  it('when there are more jobs than a page, then older ones come with "Show older jobs" and the kind filter narrows the list', async () => {
    // Eleven more normalizations of a short tone, one per set of operations.
    const tone = await readFile(await makeTone(join(work, 'tone.wav'), { seconds: 0.3 }));
    const ops = ['normalize_volume', 'remove_noise', 'convert_to_mono', 'highpass_filter', 'sample_rate_16k'];
    const sets = Array.from({ length: 31 }, (_, n) => ops.filter((_op, bit) => (n + 1) & (1 << bit))).slice(
      0,
      11,
    );
    await Promise.all(
      sets.map(async (set) => {
        const form = new FormData();
        for (const op of set) form.append('operations[]', op);
        form.append('file', new Blob([new Uint8Array(tone)], { type: 'audio/wav' }), 'tone.wav');
        const res = await fetch(`${gateway.url}/normalize`, { method: 'POST', body: form });
        expect(res.status).toBe(202);
        await res.arrayBuffer();
      }),
    );
    const total = ((await (await fetch(`${gateway.url}/jobs?limit=100`)).json()) as any).jobs.length;
    expect(total).toBeGreaterThan(10);

    const page = await openConsole();
    const rows = page.locator('li.job');
    await expect.poll(() => rows.count(), poll).toBe(10);
    const more = page.getByRole('button', { name: 'Show older jobs' });
    await more.click();
    await expect.poll(() => rows.count(), poll).toBe(Math.min(total, 20));
    // Keyboard users land on the first job of the new page.
    const firstOfPage = await rows.nth(10).locator('.job-title').textContent();
    await expect.poll(() => page.locator(':focus').textContent(), poll).toBe(firstOfPage);

    await page.getByLabel('Kind').selectOption('download');
    await expect
      .poll(async () => new Set(await rows.locator('.kind').allTextContents()), poll)
      .toEqual(new Set(['download']));
    await page.close();
  });

  it('when a job is deleted, then it leaves the list and the gateway', async () => {
    const page = await openConsole();
    await page.getByLabel(/Audio or video file/).setInputFiles(speech);
    await page.getByLabel('Convert to mono').check();
    await page.getByRole('button', { name: 'Normalize', exact: true }).click();
    const id = await answerId(page.locator('#normalize-answer'));
    const row = page.locator(`li.job[data-id="${id}"]`);
    await expect.poll(text(row.locator('.status')), poll).toBe('completed');
    await shoot(page, 'desktop-home');
    await page.setViewportSize(PHONE);
    await noSideScroll(page);
    await shoot(page, 'phone-home');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shoot(page, 'phone-home-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize(DESKTOP);

    // Dismissed: nothing happens.
    page.once('dialog', (dialog) => void dialog.dismiss());
    await row.getByRole('button', { name: `Delete ${id}` }).click();
    expect(await statusOf(id)).toBe(200);
    // Confirmed: gone from the page and from the gateway.
    page.once('dialog', (dialog) => {
      expect(dialog.message()).toBe(`Delete job ${id} and its files?`);
      void dialog.accept();
    });
    await row.getByRole('button', { name: `Delete ${id}` }).click();
    await expect.poll(() => row.count(), poll).toBe(0);
    await expect
      .poll(text(page.locator('#list-message')), poll)
      .toMatch(new RegExp(`^Deleted ${id}: \\d+ files?`));
    expect(await statusOf(id)).toBe(404);
    await page.close();
  });

  it('when API_KEYS is set, then the console asks for the key once, keeps it for the session and sends it in a header only', async () => {
    const page = await openConsole(keyed.url);
    const sent: { method: string; url: string; auth: string | undefined }[] = [];
    page.on(
      'request',
      (req) => void sent.push({ method: req.method(), url: req.url(), auth: req.headers()['authorization'] }),
    );
    const panel = page.getByRole('region', { name: 'API key' });
    expect(await panel.isVisible()).toBe(true);
    await page.getByLabel('Video or page URL').fill(`${fixtures.origin}/mp4/video.mp4?console=keyed`);
    await page.getByLabel('Quality').selectOption('144p');
    const submit = page.getByRole('button', { name: 'Download', exact: true });
    await submit.click();
    const answer = page.locator('#download-answer');
    await expect
      .poll(text(answer.getByRole('alert')))
      .toMatch(/^This gateway needs an API key: enter it at the top/);
    await expect.poll(() => page.locator(':focus').getAttribute('id')).toBe('api-key');
    await shoot(page, 'desktop-api-key');

    // A wrong key is refused and forgotten.
    await page.keyboard.type('not-the-right-key-at-all');
    await page.keyboard.press('Enter');
    await submit.click();
    await expect.poll(text(answer.getByRole('alert'))).toMatch(/^The gateway refused the API key/);
    await expect.poll(() => page.locator(':focus').getAttribute('id')).toBe('api-key');

    await page.keyboard.type(API_KEY);
    await page.keyboard.press('Enter');
    await expect.poll(() => page.getByText('API key set for this session.').isVisible()).toBe(true);
    await submit.click();
    const id = await answerId(answer);
    expect(await answer.textContent()).toContain('New job queued');
    // Reads need no key, so the live stream works as without keys.
    const row = page.locator(`li.job[data-id="${id}"]`);
    await watchProgress(row.getByRole('progressbar'));

    // Kept for the session: after a reload the key is still there and DELETE carries it.
    await page.reload();
    await expect.poll(() => page.getByText('API key set for this session.').isVisible()).toBe(true);
    page.once('dialog', (dialog) => void dialog.accept());
    await row.getByRole('button', { name: `Delete ${id}` }).click();
    await expect.poll(() => row.count(), poll).toBe(0);
    expect(await statusOf(id, keyed.url)).toBe(404);

    const writes = sent.filter((r) => r.method === 'POST' || r.method === 'DELETE');
    expect(writes.map((w) => w.auth)).toEqual([
      undefined,
      'Bearer not-the-right-key-at-all',
      `Bearer ${API_KEY}`,
      `Bearer ${API_KEY}`,
    ]);
    expect(requested.filter((url) => url.includes(API_KEY))).toEqual([]);
    // Forgetting it ends its use at once.
    await page.getByRole('button', { name: 'Forget key' }).click();
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
    await page.close();
  });

  it('when every test is done, then the browser never asked anything of another origin', () => {
    const origins = new Set(requested.map((url) => new URL(url).origin));
    expect([...origins].sort()).toEqual([gateway.url, keyed.url].sort());
  });
});
