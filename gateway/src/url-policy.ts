import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { badRequest, isLocalhostName, isPrivateAddress } from '@media-jobs/libs';

export const MAX_URL_LENGTH = 2048;

// The ranges live in libs so the download worker's egress proxy refuses exactly the same ones.
export { isPrivateAddress };

/** Syntax checks of a submitted URL; each failure is a 400 that says what is wrong. */
export function parseSubmittedUrl(raw: string): URL {
  const text = raw.trim();
  if (text.length === 0) throw badRequest('download.invalid_url', 'url must not be empty');
  if (text.length > MAX_URL_LENGTH)
    throw badRequest('download.invalid_url', `url must be at most ${MAX_URL_LENGTH} characters`);
  if (text.startsWith('-')) throw badRequest('download.invalid_url', 'url must not start with "-"');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw badRequest('download.invalid_url', 'url is not a valid absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw badRequest(
      'download.invalid_url',
      `url scheme must be http or https, not ${url.protocol.replace(/:$/, '')}`,
    );
  }
  if (!url.hostname) throw badRequest('download.invalid_url', 'url has no host');
  // Credentials would be stored in the record and shown to everyone who gets the job.
  if (url.username || url.password)
    throw badRequest('download.invalid_url', 'url must not contain a user name or password');
  return url;
}

function bareHost(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
}

/**
 * Refuses loopback, private and link-local targets unless ALLOW_PRIVATE_URLS is set: the
 * host itself when it is an address or a `localhost` name, and every address the name
 * resolves to. A name that does not resolve is let through: the download then fails with
 * yt-dlp's own message.
 */
export async function assertPublicUrl(url: URL, resolveTimeoutMs = 2000): Promise<void> {
  const host = bareHost(url);
  const refuse = () =>
    badRequest(
      'download.private_url',
      `url host ${host} is a loopback, private or link-local address; set ALLOW_PRIVATE_URLS=true to allow it`,
    );
  if (isLocalhostName(host) || isPrivateAddress(host)) throw refuse();
  if (isIP(host) !== 0) return;
  const addresses = await Promise.race([
    lookup(host, { all: true, verbatim: true }).catch(() => []),
    new Promise<[]>((resolve) => setTimeout(() => resolve([]), resolveTimeoutMs).unref()),
  ]);
  if (addresses.some((a) => isPrivateAddress(a.address))) throw refuse();
}
