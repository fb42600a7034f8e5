import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { badRequest } from '@media-jobs/libs';

export const MAX_URL_LENGTH = 2048;

/** Loopback, private, link-local, CGNAT, unspecified, multicast and reserved ranges. */
const PRIVATE = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv6');
}

export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 6) {
    // IPv4-mapped IPv6 (::ffff:127.0.0.1) is checked as the IPv4 address it carries.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped?.[1]) return PRIVATE.check(mapped[1], 'ipv4');
    return PRIVATE.check(address, 'ipv6');
  }
  return PRIVATE.check(address, 'ipv4');
}

/** Syntax checks of a submitted URL; each failure is a 400 that says what is wrong. */
export function parseSubmittedUrl(raw: string): URL {
  const text = raw.trim();
  if (text.length === 0) throw badRequest('download.invalid_url', 'url must not be empty');
  if (text.length > MAX_URL_LENGTH) throw badRequest('download.invalid_url', `url must be at most ${MAX_URL_LENGTH} characters`);
  if (text.startsWith('-')) throw badRequest('download.invalid_url', 'url must not start with "-"');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw badRequest('download.invalid_url', 'url is not a valid absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw badRequest('download.invalid_url', `url scheme must be http or https, not ${url.protocol.replace(/:$/, '')}`);
  }
  if (!url.hostname) throw badRequest('download.invalid_url', 'url has no host');
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
  if (host === 'localhost' || host.endsWith('.localhost') || isPrivateAddress(host)) throw refuse();
  if (isIP(host) !== 0) return;
  const addresses = await Promise.race([
    lookup(host, { all: true, verbatim: true }).catch(() => []),
    new Promise<[]>((resolve) => setTimeout(() => resolve([]), resolveTimeoutMs).unref()),
  ]);
  if (addresses.some((a) => isPrivateAddress(a.address))) throw refuse();
}
