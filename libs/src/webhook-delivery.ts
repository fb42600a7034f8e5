import { createHash } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { z } from 'zod';
import { isLocalhostName, isPrivateAddress } from './address-policy.js';
import { JOB_KINDS, type JobKind } from './job-record.js';
import { WEBHOOK_EVENT_TYPES } from './subjects.js';
import { webhookHeaders } from './webhook-signature.js';

/** One webhook to one receiver, as queued on `webhooks.deliver`; each is retried on its own. */
export const webhookDeliveryMessage = z.object({
  v: z.literal(1),
  webhook_id: z.string(),
  url: z.string(),
  /** `callback`: a submission's `callback_url`, held to the private-address policy; `global`: `WEBHOOK_URLS`. */
  source: z.enum(['callback', 'global']),
  kind: z.enum(JOB_KINDS),
  job_id: z.string(),
  /** The job generation whose record lists the attempts; null when the record was gone. */
  created_at: z.string().nullable(),
  event: z.enum(WEBHOOK_EVENT_TYPES),
  /** The event exactly as published on NATS: the request body, byte for byte. */
  body: z.string(),
});
export type WebhookDelivery = z.infer<typeof webhookDeliveryMessage>;

/** Longest delay between two attempts. */
export const WEBHOOK_MAX_DELAY_MS = 3_600_000;

/**
 * Delay after failed attempt `attempt` (1-based): `base * 2^(attempt-1)`, at most one hour,
 * plus up to 10 % random jitter so that receivers coming back are not hit all at once.
 */
export function webhookBackoffMs(
  attempt: number,
  baseMs: number,
  random: () => number = Math.random,
): number {
  const plain = Math.min(WEBHOOK_MAX_DELAY_MS, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(plain * (1 + 0.1 * random()));
}

/**
 * The `webhook-id` of one event of one job generation: the same for every attempt and every
 * receiver (receivers use it to drop duplicates), and computed alike wherever it is derived.
 */
export function webhookId(kind: JobKind, id: string, generation: string, type: string): string {
  return `msg_${createHash('sha256').update(`${kind}:${id}:${generation}:${type}`).digest('hex').slice(0, 32)}`;
}

/** JetStream message id of one delivery: the duplicate window drops a second fan-out of it. */
export function deliveryMessageId(delivery: Pick<WebhookDelivery, 'webhook_id' | 'url'>): string {
  return `${delivery.webhook_id}:${createHash('sha256').update(delivery.url).digest('hex').slice(0, 16)}`;
}

/** The URL as shown in a record: without user name or password. */
export function shownUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.href;
  } catch {
    return url;
  }
}

export interface PostResult {
  /** The receiver's status; null when none came. */
  status: number | null;
  error?: string;
  /** Seconds from a `Retry-After` header, if any. */
  retryAfterS?: number;
}

export interface PostOptions {
  /** Signing key; null: no `webhook-signature`. */
  key: Buffer | null;
  timeoutMs: number;
  /** Refuse loopback, private and link-local targets, checked on every address the name resolves to. */
  checkAddress: boolean;
  now?: Date;
  /** Name resolution for the check (default: the system resolver); every address returned is checked. */
  resolve?: (host: string) => Promise<string[]>;
}

class RefusedAddress extends Error {
  override readonly name = 'RefusedAddress';
}

/**
 * A `lookup` for the request that resolves the name itself, refuses it when any address is
 * private, and hands the connection exactly the checked addresses: a name that answers with
 * a public address at submission and 127.0.0.1 now (DNS rebinding) is refused at send time.
 */
function publicOnlyLookup(resolve?: (host: string) => Promise<string[]>): LookupFunction {
  const all = (hostname: string, cb: (err: Error | null, addresses: LookupAddress[]) => void): void => {
    if (!resolve) return void dnsLookup(hostname, { all: true, verbatim: true }, cb);
    resolve(hostname).then(
      (list) =>
        cb(
          null,
          list.map((address) => ({ address, family: isIP(address) })),
        ),
      (err: Error) => cb(err, []),
    );
  };
  return (hostname, options, callback) =>
    all(hostname, (err, addresses) => {
      const done = callback as (e: Error | null, a: string | LookupAddress[], f?: number) => void;
      if (err) return done(err, '', 0);
      const bad = addresses.find((a) => isPrivateAddress(a.address));
      if (bad || addresses.length === 0) {
        const why = bad ? `${bad.address}, a loopback, private or link-local address` : 'no address';
        return done(new RefusedAddress(`${hostname} resolves to ${why}`), '', 0);
      }
      if (options.all) return done(null, addresses);
      const first = addresses[0] as LookupAddress;
      done(null, first.address, first.family);
    });
}

/** The reason a URL's own host is refused before any look-up, or null. */
function refusedHost(url: URL): string | null {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isLocalhostName(host)) return `${host} is a loopback name`;
  if (isIP(host) !== 0 && isPrivateAddress(host))
    return `${host} is a loopback, private or link-local address`;
  return null;
}

/** One POST of the body with the Standard Webhooks headers; never throws. Redirects are not followed. */
export function postWebhook(delivery: WebhookDelivery, options: PostOptions): Promise<PostResult> {
  let url: URL;
  try {
    url = new URL(delivery.url);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    return Promise.resolve({ status: null, error: 'not an http(s) URL' });
  }
  if (options.checkAddress) {
    const refused = refusedHost(url);
    if (refused) return Promise.resolve({ status: null, error: `refused: ${refused}` });
  }
  const body = delivery.body;
  const headers = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    'user-agent': 'media-jobs-webhooks/1',
    ...webhookHeaders(options.key, delivery.webhook_id, body, options.now),
  };
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<PostResult>((resolve) => {
    let settled = false;
    const finish = (result: PostResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const req = send(url, {
      method: 'POST',
      headers,
      agent: false,
      ...(options.checkAddress ? { lookup: publicOnlyLookup(options.resolve) } : {}),
    });
    const timer = setTimeout(() => {
      finish({ status: null, error: `no answer within ${options.timeoutMs} ms` });
      req.destroy();
    }, options.timeoutMs);
    req.on('response', (res: IncomingMessage) => {
      res.resume();
      const status = res.statusCode ?? 0;
      const retryAfter = Number(res.headers['retry-after']);
      finish({
        status,
        ...(status >= 200 && status < 300 ? {} : { error: `HTTP ${status}` }),
        ...(Number.isFinite(retryAfter) && retryAfter > 0 ? { retryAfterS: retryAfter } : {}),
      });
    });
    req.on('error', (err) => {
      const refused = err instanceof RefusedAddress;
      finish({ status: null, error: refused ? `refused: ${err.message}` : err.message });
    });
    req.end(body);
  });
}
