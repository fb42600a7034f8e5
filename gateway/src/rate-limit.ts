import { createHash } from 'node:crypto';
import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { ipKeyGenerator } from 'express-rate-limit';
import {
  AppError,
  BUDGET_COUNT_LUA,
  LuaScript,
  type Budget,
  type Config,
  type Logger,
  type Redis,
} from '@media-jobs/libs';
import { checkApiKey } from './api-keys.js';
import { isSubmissionPath, routeKey } from './request-kind.js';

const WINDOW_MS = 60_000;
const WINDOW_S = WINDOW_MS / 1000;
/** Every replica counts in the same keys, so a client gets one budget behind a load balancer. */
const KEY_PREFIX = 'ratelimit:';

/** Fixed window: one round trip, atomic across replicas (the counting is shared with the budgeted reads). */
const INCREMENT = new LuaScript(`${BUDGET_COUNT_LUA}
return {hits, ttl}
`);

/**
 * Liveness and readiness probes come from the platform, often and from one address: never
 * limited. Nor are scrapers of `GET /metrics`: the limiter's Redis being down must not hide
 * the metrics.
 */
const UNLIMITED = new Set(['/health', '/ready']);
const isUnlimited = (method: string, path: string): boolean =>
  UNLIMITED.has(path) || (path === '/metrics' && (method === 'GET' || method === 'HEAD'));

/** `GET /jobs/:id` (and HEAD, which Express routes to it): one path segment under /jobs. */
const JOB_READ = /^\/jobs\/[^/]+$/;

/**
 * The client a budget belongs to: the API key when a valid one is sent (a shared NAT does not
 * share its budget), otherwise the address (an IPv6 /56, as one subscriber usually holds one).
 * An invalid key counts against the address, so trying keys costs budget too.
 */
function clientKey(config: Config, req: Request): string {
  const key = checkApiKey(config, req);
  if (key.valid) return key.budgetKey;
  return `ip:${ipKeyGenerator(req.ip ?? req.socket.remoteAddress ?? 'unknown')}`;
}

/** Partition keys seen lately, so the draft-8 `pk` hash is not recomputed on every request (a pure function of the key). */
const PK_MEMO_MAX = 4096;

/**
 * One named budget (`submissions` or `reads`), with the IETF draft-8 headers express-rate-limit
 * wrote before: `RateLimit-Policy: "submissions"; q=60; w=60; pk=:…:` and
 * `RateLimit: "submissions"; r=59; t=42`, and `Retry-After` when over.
 */
class Policy {
  private readonly prefix: string;
  private readonly policyHeaders = new Map<string, string>();

  constructor(
    readonly name: 'submissions' | 'reads',
    readonly limit: number,
  ) {
    this.prefix = `${KEY_PREFIX}${name}:`;
  }

  budget(client: string): Budget {
    return { key: this.prefix + client, limit: this.limit, windowMs: WINDOW_MS };
  }

  private policyHeader(client: string): string {
    let header = this.policyHeaders.get(client);
    if (header === undefined) {
      // express-rate-limit's partition key: base64 of the first 12 hex digits of sha256(key).
      const hex = createHash('sha256').update(client).digest('hex').slice(0, 12);
      header = `"${this.name}"; q=${this.limit}; w=${WINDOW_S}; pk=:${Buffer.from(hex).toString('base64')}:`;
      if (this.policyHeaders.size >= PK_MEMO_MAX) this.policyHeaders.clear();
      this.policyHeaders.set(client, header);
    }
    return header;
  }

  /** Sets the headers for a count; over the limit, the 429 to answer. */
  apply(res: Response, client: string, hits: number, ttlMs: number): AppError | null {
    const resetSeconds = Math.max(0, Math.ceil(ttlMs / 1000));
    if (!res.headersSent) {
      res.setHeader('RateLimit', `"${this.name}"; r=${Math.max(this.limit - hits, 0)}; t=${resetSeconds}`);
      res.setHeader('RateLimit-Policy', this.policyHeader(client));
    }
    if (hits <= this.limit) return null;
    if (!res.headersSent) res.setHeader('Retry-After', String(resetSeconds));
    const retryAfter = Math.max(1, resetSeconds);
    return new AppError(
      'rate_limited',
      `too many ${this.name === 'submissions' ? 'submissions' : 'requests'}; try again in ${retryAfter} s`,
      {
        status: 429,
        retryable: true,
        details: { policy: this.name, limit: this.limit, window_s: WINDOW_S, retry_after_s: retryAfter },
      },
    );
  }
}

/**
 * A count left for the route to make in the round trip of its own read (`POST /download`,
 * `GET /jobs/:id`): the rate limit still decides first, since every other way out of the
 * request (a 400, a 401, a 404 route) counts it before answering.
 */
interface Pending {
  policy: Policy;
  client: string;
  redis: Redis;
}
const PENDING = Symbol('rateLimitPending');
type WithPending = Request & { [PENDING]?: Pending };

/** A pending count handed to a read: its budget, and `settle` with the reply (throws the 429). */
export interface BudgetedRead {
  budget: Budget;
  settle(hits: number, ttlMs: number): void;
}

/** Takes the request's pending count for a budgeted read; null when none is pending (limits off). */
export function takePendingLimit(req: Request, res: Response): BudgetedRead | null {
  const pending = (req as WithPending)[PENDING];
  if (!pending) return null;
  (req as WithPending)[PENDING] = undefined;
  return {
    budget: pending.policy.budget(pending.client),
    settle: (hits, ttlMs) => {
      const refused = pending.policy.apply(res, pending.client, hits, ttlMs);
      if (refused) throw refused;
    },
  };
}

export function hasPendingLimit(req: Request): boolean {
  return (req as WithPending)[PENDING] !== undefined;
}

/** Counts a pending request now (its own round trip); rejects with the 429 when over. */
export async function settlePendingLimit(req: Request, res: Response): Promise<void> {
  const pending = (req as WithPending)[PENDING];
  const read = takePendingLimit(req, res);
  if (!pending || !read) return;
  const reply = (await INCREMENT.run(pending.redis, [read.budget.key], [WINDOW_MS])) as [number, number];
  read.settle(Number(reply[0]), Number(reply[1]));
}

/** Before the error handler: a request whose count was left for a read that never came is counted now, and a 429 wins. */
export const settleLimitBeforeError: ErrorRequestHandler = (err, req, res, next) => {
  if (!hasPendingLimit(req)) return next(err);
  settlePendingLimit(req, res).then(
    () => next(err),
    (refused: unknown) => next(refused),
  );
};

/**
 * Per-client limits kept in Redis: RATE_LIMIT_PER_MINUTE for submissions,
 * RATE_LIMIT_READS_PER_MINUTE for everything else but /health and /ready (0 turns either off).
 * It runs before any body is read, so a refused upload costs no disk. `POST /download` and
 * `GET /jobs/:id` count in the round trip of their own read instead (one Lua script); a
 * request that ends before that read is counted on its way out, so the limit's verdict is the
 * same and a 429 still wins over a 400 or 401.
 */
export function rateLimits(deps: { config: Config; redis: Redis; logger: Logger }): RequestHandler {
  const { config, redis } = deps;
  const { rateLimitPerMinute, rateLimitReadsPerMinute } = config;
  const submissions = rateLimitPerMinute > 0 ? new Policy('submissions', rateLimitPerMinute) : null;
  const reads = rateLimitReadsPerMinute > 0 ? new Policy('reads', rateLimitReadsPerMinute) : null;
  return (req, res, next) => {
    const path = routeKey(req);
    const method = req.method;
    if (isUnlimited(method, path)) return next();
    const policy = isSubmissionPath(method, path) ? submissions : reads;
    if (!policy) return next();
    const client = clientKey(config, req);
    const deferred =
      (method === 'POST' && path === '/download') ||
      ((method === 'GET' || method === 'HEAD') && JOB_READ.test(path));
    if (deferred) {
      (req as WithPending)[PENDING] = { policy, client, redis };
      return next();
    }
    INCREMENT.run(redis, [policy.budget(client).key], [WINDOW_MS]).then((reply) => {
      const [hits, ttl] = reply as [number, number];
      next(policy.apply(res, client, Number(hits), Number(ttl)) ?? undefined);
    }, next);
  };
}
