import { chmod, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from './config.js';
import { AppError, badRequest } from './errors.js';
import type { Redis } from './redis.js';

/**
 * yt-dlp's cookies (`--cookies`, a Netscape cookies.txt): from `PUT /admin/cookies`, kept in
 * Redis so that workers on other hosts see the same ones, or else from `YTDLP_COOKIES_FILE`.
 * yt-dlp writes the jar back to its file when it exits, so every run gets a private copy in
 * its work folder, removed after the run: the operator's file is never changed, two runs never
 * write one file, and no copy outlives its run. The content is never logged or served.
 */

/** Redis hash: `content`, `bytes`, `cookies`, `updated_at`. No TTL: it lasts until replaced or deleted. */
export const COOKIES_KEY = 'config:ytdlp_cookies';
/** Largest cookies.txt accepted; a browser export for a few sites is some KB. */
export const MAX_COOKIES_BYTES = 1024 * 1024;
/** The private copy's name inside a run's work folder (never a media name: see `readResult`). */
export const COOKIES_COPY_NAME = '.yt-dlp-cookies.txt';

export interface CookiesState {
  present: boolean;
  /** `redis` (PUT /admin/cookies) wins over `file` (YTDLP_COOKIES_FILE). */
  source: 'redis' | 'file' | 'none';
  bytes: number | null;
  cookies: number | null;
  /** ISO 8601: when they were PUT, or the file's modification time. */
  updated_at: string | null;
  /** Set when YTDLP_COOKIES_FILE is configured but cannot be read. */
  problem?: string;
}

/**
 * The number of cookies in a Netscape cookies.txt, or a 400 that says which line is wrong.
 * A cookie line has seven tab-separated fields: domain, include-subdomains (TRUE/FALSE),
 * path, secure (TRUE/FALSE), expiry (epoch seconds, 0 for a session cookie), name, value.
 * `#HttpOnly_` before the domain marks an HttpOnly cookie; other `#` lines are comments.
 */
export function validateCookies(text: string): number {
  const bad = (why: string) => badRequest('cookies.invalid', `not a Netscape cookies.txt: ${why}`);
  if (Buffer.byteLength(text) > MAX_COOKIES_BYTES)
    throw badRequest('cookies.too_large', `cookies.txt must be at most ${MAX_COOKIES_BYTES} bytes`);
  if (text.includes('\0')) throw bad('it contains NUL bytes');
  let count = 0;
  const lines = text.split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    const line = raw.startsWith('#HttpOnly_') ? raw.slice('#HttpOnly_'.length) : raw;
    if (line.trim() === '' || line.startsWith('#')) continue;
    const fields = line.split('\t');
    const at = `line ${i + 1}`;
    if (fields.length !== 7) throw bad(`${at} has ${fields.length} tab-separated fields, not 7`);
    const [domain, subdomains, path, secure, expiry, name] = fields as [string, ...string[]];
    if (!/^\.?[A-Za-z0-9.-]+$/.test(domain) && !/^\[[0-9a-fA-F:]+\]$/.test(domain))
      throw bad(`${at} has no domain`);
    if (!/^(TRUE|FALSE)$/i.test(subdomains ?? '') || !/^(TRUE|FALSE)$/i.test(secure ?? ''))
      throw bad(`${at}: the 2nd and 4th fields must be TRUE or FALSE`);
    if (!path?.startsWith('/')) throw bad(`${at}: the path must start with /`);
    if (!/^\d*$/.test(expiry ?? '')) throw bad(`${at}: the expiry must be epoch seconds`);
    if (!name) throw bad(`${at} has no cookie name`);
    count += 1;
  }
  if (count === 0) throw bad('it holds no cookie line');
  return count;
}

/** Replaces the cookies every worker uses (after `validateCookies`). */
export async function putCookies(redis: Redis, text: string): Promise<CookiesState> {
  const cookies = validateCookies(text);
  const state = {
    bytes: Buffer.byteLength(text),
    cookies,
    updated_at: new Date().toISOString(),
  };
  await redis
    .multi()
    .del(COOKIES_KEY)
    .hset(COOKIES_KEY, { content: text, ...state })
    .exec();
  return { present: true, source: 'redis', ...state };
}

/** Drops the cookies of `PUT /admin/cookies`; YTDLP_COOKIES_FILE (if set) applies again. */
export async function deleteCookies(redis: Redis): Promise<boolean> {
  return (await redis.del(COOKIES_KEY)) > 0;
}

/** What `/admin/stats` shows: where the cookies come from, their size and age, never their content. */
export async function cookiesState(
  redis: Redis,
  config: Pick<Config, 'ytDlpCookiesFile'>,
): Promise<CookiesState> {
  const [bytes, cookies, updatedAt] = await redis.hmget(COOKIES_KEY, 'bytes', 'cookies', 'updated_at');
  if (bytes !== null) {
    return {
      present: true,
      source: 'redis',
      bytes: Number(bytes),
      cookies: cookies === null ? null : Number(cookies),
      updated_at: updatedAt ?? null,
    };
  }
  const none: CookiesState = { present: false, source: 'none', bytes: null, cookies: null, updated_at: null };
  if (!config.ytDlpCookiesFile) return none;
  try {
    const [st, text] = await Promise.all([
      stat(config.ytDlpCookiesFile),
      readFile(config.ytDlpCookiesFile, 'utf8'),
    ]);
    let count: number | null = null;
    let problem: string | undefined;
    try {
      count = validateCookies(text);
    } catch (err) {
      problem = (err as Error).message;
    }
    return {
      present: true,
      source: 'file',
      bytes: st.size,
      cookies: count,
      updated_at: st.mtime.toISOString(),
      ...(problem ? { problem } : {}),
    };
  } catch (err) {
    return {
      ...none,
      problem: `YTDLP_COOKIES_FILE cannot be read: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    };
  }
}

/**
 * Writes this run's private copy of the cookies into `dir` (owner-only) and returns its path,
 * or null when there are none. Redis (PUT /admin/cookies) wins over YTDLP_COOKIES_FILE.
 */
export async function writeCookiesCopy(
  redis: Redis | undefined,
  config: Pick<Config, 'ytDlpCookiesFile'>,
  dir: string,
): Promise<string | null> {
  let content = redis ? await redis.hget(COOKIES_KEY, 'content') : null;
  if (content === null && config.ytDlpCookiesFile) {
    try {
      content = await readFile(config.ytDlpCookiesFile, 'utf8');
    } catch (err) {
      // An operator can fix the file (or PUT /admin/cookies) while the job waits for a retry.
      throw new AppError(
        'config.cookies_unreadable',
        `YTDLP_COOKIES_FILE cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); fix it or PUT /admin/cookies`,
        { retryable: true },
      );
    }
  }
  if (content === null) return null;
  const path = join(dir, COOKIES_COPY_NAME);
  await writeFile(path, content, { mode: 0o600 });
  // The mode of writeFile is masked by the umask; a cookie jar is for the owner alone anyway.
  await chmod(path, 0o600);
  return path;
}

/** Removes a run's copy (yt-dlp may have rewritten it); a missing copy is fine. */
export async function removeCookiesCopy(path: string | null): Promise<void> {
  if (path) await rm(path, { force: true });
}
