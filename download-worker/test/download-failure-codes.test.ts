import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAILURE_KINDS } from '@media-jobs/libs';
import { startDownloadWorker, type DownloadWorker } from '../src/worker.js';
import { startTestBed, type TestBed } from './test-bed.js';
import { YT_DLP_MESSAGES } from './yt-dlp-messages.js';

/**
 * Every failure code end to end: the real yt-dlp cannot be made to meet a bot check or a geo
 * block here, so a stand-in prints yt-dlp's own message (from its source) for the case named
 * in the URL, as yt-dlp does: on stderr, exit code 1.
 */
const FAKE_YT_DLP = `#!/usr/bin/env node
const { readFileSync } = require('node:fs');
const args = process.argv.slice(2);
if (args.includes('--version')) { console.log('2026.08.19-fake'); process.exit(0); }
const cases = JSON.parse(readFileSync(__dirname + '/cases.json', 'utf8'));
const n = Number(/\\/case\\/(\\d+)/.exec(args.at(-1))[1]);
process.stderr.write('WARNING: a warning first, as yt-dlp often prints one\\n' + cases[n] + '\\n');
process.exit(1);
`;

let bed: TestBed;
let worker: DownloadWorker;
let toolDir: string;

beforeAll(async () => {
  bed = await startTestBed();
  toolDir = await mkdtemp(join(tmpdir(), 'fake-yt-dlp-'));
  const script = join(toolDir, 'yt-dlp.cjs');
  await writeFile(script, FAKE_YT_DLP);
  await chmod(script, 0o755);
  await writeFile(join(toolDir, 'cases.json'), JSON.stringify(YT_DLP_MESSAGES.map(([, line]) => line)));
  worker = await startDownloadWorker(
    bed.platform.config({ YTDLP_PATH: script, JOB_MAX_DELIVER: '2', DOWNLOAD_CONCURRENCY: '8' }),
  );
});

afterAll(async () => {
  await worker?.stop();
  await bed?.close();
  if (toolDir) await rm(toolDir, { recursive: true, force: true });
});

describe('failure codes', () => {
  it('when yt-dlp prints each of its known errors, then each job ends with the code of the table, final ones at once and the others after a retry', async () => {
    const final = new Map(FAILURE_KINDS.map((k) => [k.code, k.final]));
    const jobs = await Promise.all(
      YT_DLP_MESSAGES.map(async ([code], i) => ({
        code,
        job: await bed.submit(`http://127.0.0.1:9/case/${i}`, 'best'),
      })),
    );
    const outcomes = await Promise.all(
      jobs.map(async ({ code, job }) => {
        const record = await bed.waitFor(job.id, ['failed'], 60_000);
        const retried = job.events.filter((e) => e.type === 'queued' && e.reason === 'retry');
        return {
          expected: { code, attempts: final.get(code) ? 1 : 2, retried: final.get(code) ? 0 : 1 },
          actual: { code: record.error?.code, attempts: record.attempts, retried: retried.length },
          message: record.error?.message ?? '',
        };
      }),
    );
    for (const o of outcomes) {
      expect(o.actual).toEqual(o.expected);
      // yt-dlp's advice is for its command line, which users of this service do not have.
      expect(o.message).not.toMatch(/Use --|please report/);
    }
    const botCheck = outcomes.find((o) => o.actual.code === 'source.bot_check');
    expect(botCheck?.message).toMatch(/YTDLP_COOKIES_FILE.*PUT \/admin\/cookies/);
  });
});
