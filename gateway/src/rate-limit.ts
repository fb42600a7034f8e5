import { createHash } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { ipKeyGenerator, rateLimit, type IncrementResponse, type Store } from 'express-rate-limit';
import { AppError, LuaScript, type Config, type Logger, type Redis } from '@media-jobs/libs';
import { isValidApiKey, presentedApiKey } from './api-keys.js';
import { isSubmission, routeKey } from './request-kind.js';

const WINDOW_MS = 60_000;
/** Every replica counts in the same keys, so a client gets one budget behind a load balancer. */
const KEY_PREFIX = 'ratelimit:';

/**
 * Fixed window: the first hit of a window sets the expiry, later hits only count. One round
 * trip, atomic across replicas. A key that somehow lost its expiry gets it back.
 */
const INCREMENT = new LuaScript(`
local hits = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {hits, ttl}
`);

/**
 * An express-rate-limit store on our own ioredis connection. Not `rate-limit-redis`: it loads
 * its scripts in the constructor with no rejection handler, so a Redis that is down when the
 * gateway starts becomes an unhandled rejection; `LuaScript` loads lazily and survives restarts.
 */
export class RedisRateLimitStore implements Store {
  readonly localKeys = false;
  readonly prefix: string;

  constructor(
    private readonly redis: Redis,
    name: string,
  ) {
    this.prefix = `${KEY_PREFIX}${name}:`;
  }

  async increment(key: string): Promise<IncrementResponse> {
    const reply = (await INCREMENT.run(this.redis, [this.prefix + key], [WINDOW_MS])) as [number, number];
    return { totalHits: Number(reply[0]), resetTime: new Date(Date.now() + Number(reply[1])) };
  }

  async decrement(key: string): Promise<void> {
    // Never creates a counter: a DECR on a missing key would leave one without expiry.
    if ((await this.redis.exists(this.prefix + key)) === 1) await this.redis.decr(this.prefix + key);
  }

  async resetKey(key: string): Promise<void> {
    await this.redis.del(this.prefix + key);
  }
}

/** Liveness and readiness probes come from the platform, often and from one address: never limited. */
const UNLIMITED = new Set(['/health', '/ready']);

/**
 * The client a budget belongs to: the API key when a valid one is sent (a shared NAT does not
 * share its budget), otherwise the address (an IPv6 /56, as one subscriber usually holds one).
 * An invalid key counts against the address, so trying keys costs budget too.
 */
function clientKey(config: Config, req: Request): string {
  const key = presentedApiKey(req);
  if (key !== null && isValidApiKey(config.apiKeys, key)) {
    return `key:${createHash('sha256').update(key).digest('hex').slice(0, 24)}`;
  }
  return `ip:${ipKeyGenerator(req.ip ?? req.socket.remoteAddress ?? 'unknown')}`;
}

function limiter(
  deps: { config: Config; redis: Redis; logger: Logger },
  name: 'submissions' | 'reads',
  limit: number,
): RequestHandler {
  return rateLimit({
    windowMs: WINDOW_MS,
    limit,
    // draft-8: `RateLimit-Policy: "submissions";q=60;w=60` and `RateLimit: "submissions";r=59;t=42`.
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    identifier: name,
    store: new RedisRateLimitStore(deps.redis, name),
    keyGenerator: (req) => clientKey(deps.config, req),
    // A Redis error goes to the error handler (503, Retry-After) rather than letting floods through.
    passOnStoreError: false,
    // These checks would log on every request carrying a forged X-Forwarded-For; TRUST_PROXY decides.
    validate: { xForwardedForHeader: false, forwardedHeader: false },
    logger: {
      warn: (err: unknown) => deps.logger.warn({ err }, 'rate limiter'),
      error: (err: unknown) => deps.logger.error({ err }, 'rate limiter'),
    },
    handler: (req, _res, next) => {
      const info = (req as Request & { rateLimit?: { limit: number; resetTime?: Date } }).rateLimit;
      const retryAfter = info?.resetTime
        ? Math.max(1, Math.ceil((info.resetTime.getTime() - Date.now()) / 1000))
        : 60;
      next(
        new AppError(
          'rate_limited',
          `too many ${name === 'submissions' ? 'submissions' : 'requests'}; try again in ${retryAfter} s`,
          {
            status: 429,
            retryable: true,
            details: {
              policy: name,
              limit: info?.limit ?? limit,
              window_s: WINDOW_MS / 1000,
              retry_after_s: retryAfter,
            },
          },
        ),
      );
    },
  });
}

/**
 * Per-client limits kept in Redis: RATE_LIMIT_PER_MINUTE for submissions,
 * RATE_LIMIT_READS_PER_MINUTE for everything else but /health and /ready (0 turns either off).
 * It runs before any body is read, so a refused upload costs no disk.
 */
export function rateLimits(deps: { config: Config; redis: Redis; logger: Logger }): RequestHandler {
  const { rateLimitPerMinute, rateLimitReadsPerMinute } = deps.config;
  const submissions = rateLimitPerMinute > 0 ? limiter(deps, 'submissions', rateLimitPerMinute) : null;
  const reads = rateLimitReadsPerMinute > 0 ? limiter(deps, 'reads', rateLimitReadsPerMinute) : null;
  return (req, res, next) => {
    if (UNLIMITED.has(routeKey(req))) return next();
    const chosen = isSubmission(req) ? submissions : reads;
    if (!chosen) return next();
    return chosen(req, res, next);
  };
}
