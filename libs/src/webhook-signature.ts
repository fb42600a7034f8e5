import { createHmac } from 'node:crypto';

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com, symmetric scheme): the content
 * signed is `<webhook-id>.<webhook-timestamp>.<body>`, with HMAC-SHA256 keyed by the secret's
 * base64-decoded bytes, sent as `v1,<base64 signature>`.
 */

/** The key bytes of a `whsec_<base64>` secret (the prefix may be left out, as the reference libraries allow). */
export function webhookKey(secret: string): Buffer {
  const b64 = secret.startsWith('whsec_') ? secret.slice(6) : secret;
  return Buffer.from(b64, 'base64');
}

/** `v1,<base64 HMAC-SHA256 over "<id>.<timestamp>.<body>">`; `timestamp` in whole seconds. */
export function signWebhook(key: Buffer, id: string, timestamp: number, body: string): string {
  const mac = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`, 'utf8').digest('base64');
  return `v1,${mac}`;
}

/** The three Standard Webhooks headers of one attempt (no signature without a key). */
export function webhookHeaders(
  key: Buffer | null,
  id: string,
  body: string,
  now: Date = new Date(),
): Record<string, string> {
  const timestamp = Math.floor(now.getTime() / 1000);
  const headers: Record<string, string> = { 'webhook-id': id, 'webhook-timestamp': String(timestamp) };
  if (key && key.length > 0) headers['webhook-signature'] = signWebhook(key, id, timestamp, body);
  return headers;
}
