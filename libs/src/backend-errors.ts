import { JetStreamApiError, JetStreamError } from '@nats-io/jetstream';
import { errors as natsErrors } from '@nats-io/transport-node';
import { ReplyError, type Redis } from 'ioredis';

/**
 * Tells a backend outage (Redis or NATS away, or not serving yet) from every other error, by
 * error class, error code and the connection's state, never by message text. Each rule was
 * checked against the error a real server gives (`libs/test/backend-errors.test.ts`):
 *
 * - NATS (nats.js v3): `ClosedConnectionError`, `DrainingConnectionError`, `ConnectionError`,
 *   `TimeoutError` (a request or JetStream call while the server is away), `RequestError`
 *   (no responders, or the link dropped mid-request), `NoRespondersError`,
 *   `JetStreamNotEnabled` (no JetStream answers), and JetStream API or status errors with
 *   status 503.
 * - ioredis: `MaxRetriesPerRequestError` (commands in flight or queued when the link
 *   dropped), and `ReplyError`s whose reply code (the first word, which is the protocol's
 *   error code) says the server cannot serve now: LOADING, READONLY, MASTERDOWN,
 *   CLUSTERDOWN, BUSY, NOREPLICAS.
 * - Node system errors (`code`, also on a `cause` or an AggregateError's errors):
 *   ECONNREFUSED, ECONNRESET, ETIMEDOUT, EPIPE, EHOSTUNREACH, ENETUNREACH, ENOTCONN, EAI_AGAIN.
 * - ioredis also throws plain `Error`s with nothing but a message ("Connection is closed.",
 *   "Stream isn't writeable and enableOfflineQueue options is false"): those count when the
 *   client they came from is not `ready`, which is what they mean.
 */

export type Backend = 'redis' | 'nats';

export interface BackendOutage {
  /** Which backend, when the error says; null for a system error that could be either. */
  readonly backend: Backend | null;
  /** A short machine-readable reason: `redis.reply_loading`, `nats.timeout`, `system.econnrefused`... */
  readonly reason: string;
}

/**
 * The connections an error may have come from, whose state decides for plain errors. (nats.js
 * throws a class for every failure seen, so only Redis' state is needed.)
 */
export interface BackendConnections {
  readonly redis?: (Pick<Redis, 'status'> & { readonly stream?: { readonly writable: boolean } }) | undefined;
}

/** Reply codes of a Redis that is up but cannot serve the command now. */
const REDIS_UNAVAILABLE_REPLIES = new Set([
  'LOADING',
  'READONLY',
  'MASTERDOWN',
  'CLUSTERDOWN',
  'BUSY',
  'NOREPLICAS',
]);

/** System error codes of a link that is down, refused, reset or unreachable. */
const SYSTEM_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTCONN',
  'EAI_AGAIN',
]);

const NATS_CLASSES: readonly [new (...args: never[]) => Error, string][] = [
  [natsErrors.ClosedConnectionError, 'nats.closed'],
  [natsErrors.DrainingConnectionError, 'nats.draining'],
  [natsErrors.ConnectionError, 'nats.connection'],
  [natsErrors.TimeoutError, 'nats.timeout'],
  [natsErrors.NoRespondersError, 'nats.no_responders'],
  [natsErrors.RequestError, 'nats.request_failed'],
];

/** The Redis reply's error code: the first word of a `ReplyError` (`READONLY You can't...`). */
export function redisReplyCode(err: unknown): string | null {
  if (!(err instanceof ReplyError)) return null;
  return /^[A-Z]+/.exec((err as Error).message)?.[0] ?? null;
}

function systemCode(err: unknown, depth = 0): string | null {
  if (typeof err !== 'object' || err === null || depth > 4) return null;
  const { code, cause, errors } = err as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === 'string' && SYSTEM_CODES.has(code)) return code;
  if (Array.isArray(errors)) {
    for (const e of errors) {
      const found = systemCode(e, depth + 1);
      if (found) return found;
    }
  }
  return systemCode(cause, depth + 1);
}

function natsOutage(err: Error): BackendOutage | null {
  for (const [cls, reason] of NATS_CLASSES) if (err instanceof cls) return { backend: 'nats', reason };
  if (err instanceof JetStreamApiError) {
    return err.status === 503 ? { backend: 'nats', reason: 'nats.jetstream_unavailable' } : null;
  }
  // `@nats-io/jetstream` exports these two classes only from its internal entry point; their
  // `name` is their class name. A status error's `code` is the status (503: no responders).
  if (err.name === 'JetStreamNotEnabled') return { backend: 'nats', reason: 'nats.jetstream_not_enabled' };
  if (err instanceof JetStreamError && err.name === 'JetStreamStatusError') {
    return (err as JetStreamError & { code?: unknown }).code === 503
      ? { backend: 'nats', reason: 'nats.jetstream_unavailable' }
      : null;
  }
  return null;
}

function redisOutage(err: Error, redis: BackendConnections['redis']): BackendOutage | null {
  // A class, not exported by ioredis' entry point: its `name` is its class name.
  if (err.name === 'MaxRetriesPerRequestError') return { backend: 'redis', reason: 'redis.max_retries' };
  const reply = redisReplyCode(err);
  if (reply !== null) {
    return REDIS_UNAVAILABLE_REPLIES.has(reply)
      ? { backend: 'redis', reason: `redis.reply_${reply.toLowerCase()}` }
      : null;
  }
  // ioredis' plain Errors carry a message only; the client's state says what they mean. Its
  // socket can end a moment before the client leaves `ready` (the server closed it, the
  // 'close' event has not run yet): a command sent then fails the same way, so an ended
  // socket counts too, as it does for ioredis itself when it decides a command can be sent.
  if (err.constructor === Error && redis && (redis.status !== 'ready' || redis.stream?.writable === false)) {
    return { backend: 'redis', reason: 'redis.not_ready' };
  }
  return null;
}

/**
 * The outage an error stands for, or null when it is something else (a bug, bad input, a
 * Redis reply such as WRONGTYPE or NOSCRIPT, a JetStream 404). Pass the connections the
 * failed call used, so a plain error from a client that is not ready is recognised.
 */
export function backendOutage(err: unknown, connections: BackendConnections = {}): BackendOutage | null {
  if (!(err instanceof Error)) return null;
  const known = natsOutage(err) ?? redisOutage(err, connections.redis);
  if (known) return known;
  const code = systemCode(err);
  return code ? { backend: null, reason: `system.${code.toLowerCase()}` } : null;
}

export function isBackendOutage(err: unknown, connections: BackendConnections = {}): boolean {
  return backendOutage(err, connections) !== null;
}
