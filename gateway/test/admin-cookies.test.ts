import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COOKIES_KEY, MAX_COOKIES_BYTES, createRedis, validateCookies, type Redis } from '@media-jobs/libs';
import { startPlatform, type Platform } from '@media-jobs/libs/testing';
import { startGateway, type Gateway } from '../src/gateway.js';
import { fetchDocCheck, type DocCheck } from './openapi-check.js';

let platform: Platform;
let gateway: Gateway;
let redis: Redis;
let scratch: string;
let check: DocCheck;
const TOKEN = 'cookie-admin-token';
const auth = { authorization: `Bearer ${TOKEN}` };
const SECRET = 'sess-9a8b7c6d5e4f';
const COOKIES = `# Netscape HTTP Cookie File\n.youtube.com\tTRUE\t/\tTRUE\t1893456000\tSID\t${SECRET}\n#HttpOnly_.youtube.com\tTRUE\t/\tTRUE\t0\tHSID\tx\n`;

beforeAll(async () => {
  platform = await startPlatform();
  scratch = await mkdtemp(join(tmpdir(), 'mj-admin-cookies-'));
  const file = join(scratch, 'cookies.txt');
  await writeFile(file, `.example.com\tTRUE\t/\tFALSE\t0\tfrom_file\tfile-secret\n`);
  gateway = await startGateway(platform.config({ ADMIN_TOKEN: TOKEN, YTDLP_COOKIES_FILE: file }));
  redis = createRedis(platform.config());
  check = await fetchDocCheck(gateway.url);
});

afterAll(async () => {
  await gateway?.stop();
  redis?.disconnect();
  await platform?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

async function call(
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; body: any; text: string }> {
  const res = await fetch(`${gateway.url}${path}`, init);
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text), text };
}

describe('PUT /admin/cookies', () => {
  it('when no or a wrong token is sent, then the cookies are not replaced (401)', async () => {
    expect((await call('/admin/cookies', { method: 'PUT', body: COOKIES })).status).toBe(401);
    const wrong = { authorization: 'Bearer nope' };
    expect((await call('/admin/cookies', { method: 'PUT', body: COOKIES, headers: wrong })).status).toBe(401);
    expect(await redis.exists(COOKIES_KEY)).toBe(0);
  });

  it('when only YTDLP_COOKIES_FILE is set, then /admin/stats says the file is the source, without its content', async () => {
    const stats = await call('/admin/stats', { headers: auth });
    expect(stats.status).toBe(200);
    check.response('/admin/stats', 'get', 200, stats.body);
    expect(stats.body.ytdlp_cookies).toMatchObject({ present: true, source: 'file', cookies: 1 });
    expect(stats.text).not.toContain('file-secret');
  });

  it('when a Netscape cookies.txt is PUT, then Redis holds it, the answer and /admin/stats describe it, and neither shows it', async () => {
    const put = await call('/admin/cookies', {
      method: 'PUT',
      body: COOKIES,
      headers: { ...auth, 'content-type': 'text/plain' },
    });
    expect(put.status).toBe(200);
    check.response('/admin/cookies', 'put', 200, put.body);
    expect(put.body).toMatchObject({
      present: true,
      source: 'redis',
      cookies: 2,
      bytes: Buffer.byteLength(COOKIES),
    });
    expect(put.text).not.toContain(SECRET);
    expect(await redis.hget(COOKIES_KEY, 'content')).toBe(COOKIES);
    const stats = await call('/admin/stats', { headers: auth });
    expect(stats.body.ytdlp_cookies).toMatchObject({ present: true, source: 'redis', cookies: 2 });
    expect(Date.parse(stats.body.ytdlp_cookies.updated_at)).toBeGreaterThan(Date.now() - 60_000);
    expect(stats.text).not.toContain(SECRET);
    // Any content type is read as text (curl --data-binary @cookies.txt sends form-urlencoded).
    const again = await call('/admin/cookies', {
      method: 'PUT',
      body: COOKIES,
      headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(again.status).toBe(200);
    expect(await redis.hget(COOKIES_KEY, 'content')).toBe(COOKIES);
  });

  it.each([
    ['an empty body', '', 'cookies.missing'],
    ['JSON', '{"cookies": "SID=1"}', 'cookies.invalid'],
    ['a Cookie header', 'SID=abc; HSID=def', 'cookies.invalid'],
    ['a line with six fields', '.youtube.com\tTRUE\t/\tTRUE\t0\tSID\n', 'cookies.invalid'],
    ['a bad flag', '.youtube.com\tyes\t/\tTRUE\t0\tSID\tv\n', 'cookies.invalid'],
    ['a bad expiry', '.youtube.com\tTRUE\t/\tTRUE\tsoon\tSID\tv\n', 'cookies.invalid'],
    ['comments only', '# Netscape HTTP Cookie File\n\n', 'cookies.invalid'],
  ])('when %s is PUT, then the answer is a 400 and the stored cookies stay', async (_what, body, code) => {
    const res = await call('/admin/cookies', {
      method: 'PUT',
      body,
      headers: { ...auth, 'content-type': 'text/plain' },
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe(code);
    expect(await redis.hget(COOKIES_KEY, 'content')).toBe(COOKIES);
  });

  it('when the body is larger than the limit, then the answer is a 413', async () => {
    const line = '.example.com\tTRUE\t/\tFALSE\t0\tname\tvalue\n';
    const big = line.repeat(Math.ceil((MAX_COOKIES_BYTES + 10) / line.length));
    const res = await call('/admin/cookies', {
      method: 'PUT',
      body: big,
      headers: { ...auth, 'content-type': 'text/plain' },
    });
    expect(res.status).toBe(413);
  });

  it('when the cookies are deleted, then YTDLP_COOKIES_FILE applies again', async () => {
    const res = await call('/admin/cookies', { method: 'DELETE', headers: auth });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ deleted: true, source: 'file' });
    expect(await redis.exists(COOKIES_KEY)).toBe(0);
  });

  it('when a cookies.txt is validated, then the cookie lines are counted and HttpOnly lines are cookies', () => {
    expect(validateCookies(COOKIES)).toBe(2);
    expect(validateCookies('127.0.0.1\tFALSE\t/\tFALSE\t\tname\t\r\n')).toBe(1);
  });
});
