import { AppError, badRequest } from '@media-jobs/libs';
import { assertPublicUrl, MAX_URL_LENGTH } from './url-policy.js';

/**
 * A submission's `callback_url`: http(s), absolute, at most 2048 characters, no user name or
 * password (the record lists the URL of every attempt). Each failure is a 400
 * `webhook.invalid_callback_url` that says what is wrong; absent or empty: no callback.
 */
export function parseCallbackUrl(raw: unknown): URL | null {
  if (raw === undefined || raw === null) return null;
  const invalid = (why: string) => badRequest('webhook.invalid_callback_url', `callback_url ${why}`);
  if (typeof raw !== 'string') throw invalid('must be a string');
  const text = raw.trim();
  if (text === '') return null;
  if (text.length > MAX_URL_LENGTH) throw invalid(`must be at most ${MAX_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid('is not a valid absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw invalid(`scheme must be http or https, not ${url.protocol.replace(/:$/, '')}`);
  if (!url.hostname) throw invalid('has no host');
  if (url.username || url.password) throw invalid('must not contain a user name or password');
  return url;
}

/**
 * The private-address policy of downloads, for callbacks: unless ALLOW_PRIVATE_URLS, a
 * loopback, private or link-local host (or a name resolving to one) is a 400
 * `webhook.private_callback_url`. The sender checks every resolved address again at each
 * attempt, so a name that changes its answer later (DNS rebinding) is refused then.
 */
export async function assertPublicCallback(url: URL, allowPrivate: boolean): Promise<void> {
  if (allowPrivate) return;
  try {
    await assertPublicUrl(url);
  } catch (err) {
    if (!(err instanceof AppError) || err.code !== 'download.private_url') throw err;
    throw badRequest(
      'webhook.private_callback_url',
      `callback_url host ${url.hostname} is a loopback, private or link-local address; set ALLOW_PRIVATE_URLS=true to allow it`,
    );
  }
}
