import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { AppError, type Config } from '@media-jobs/libs';
import { hasPendingLimit, settlePendingLimit } from './rate-limit.js';
import { isSubmission, routeKey } from './request-kind.js';

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** The key a request presents: `Authorization: Bearer <key>` or `X-API-Key: <key>`, or null. */
export function presentedApiKey(req: Request): string | null {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.get('authorization') ?? '');
  if (bearer?.[1]) return bearer[1];
  const header = req.get('x-api-key')?.trim();
  return header ? header : null;
}

/** The configured keys' digests, computed once per key list (not per request). */
const digestsOf = new WeakMap<readonly string[], Buffer[]>();
/**
 * Checks of keys found valid, by key list: at most one entry per configured key, so a valid
 * key is not hashed again on every request. Other keys are always digested and compared.
 */
const validOf = new WeakMap<readonly string[], Map<string, ApiKeyCheck>>();
function keyDigests(keys: readonly string[]): Buffer[] {
  let digests = digestsOf.get(keys);
  if (!digests) {
    digests = keys.map(digest);
    digestsOf.set(keys, digests);
  }
  return digests;
}

/** True when `wanted` (a sha256 digest) is one of the keys'; no early exit on a match. */
function matches(keys: readonly string[], wanted: Buffer): boolean {
  let match = false;
  for (const key of keyDigests(keys)) match = timingSafeEqual(key, wanted) || match;
  return match;
}

/**
 * Compared on sha256 digests with timingSafeEqual, against every key without stopping at a
 * match: neither the length nor which key matched shows in the timing.
 */
export function isValidApiKey(keys: readonly string[], presented: string): boolean {
  return matches(keys, digest(presented));
}

/** What a request's key check found: the key presented (or null), and for a valid one its budget key. */
export type ApiKeyCheck =
  { presented: string | null; valid: false } | { presented: string; valid: true; budgetKey: string };

const CHECK = Symbol('apiKeyCheck');
const NO_KEY: ApiKeyCheck = { presented: null, valid: false };

/**
 * The request's key checked once (the rate limit and the guard both ask): one digest of the
 * presented key. A valid key's budget is `key:` + the first 24 hex digits of its sha256.
 */
export function checkApiKey(config: Pick<Config, 'apiKeys'>, req: Request): ApiKeyCheck {
  const r = req as Request & { [CHECK]?: ApiKeyCheck };
  const seen = r[CHECK];
  if (seen) return seen;
  const keys = config.apiKeys;
  const presented = keys.length === 0 ? null : presentedApiKey(req);
  let check: ApiKeyCheck = NO_KEY;
  if (presented !== null) {
    let valid = validOf.get(keys);
    if (!valid) validOf.set(keys, (valid = new Map()));
    const known = valid.get(presented);
    if (known) check = known;
    else {
      const wanted = digest(presented);
      if (matches(keys, wanted)) {
        check = { presented, valid: true, budgetKey: `key:${wanted.toString('hex', 0, 12)}` };
        valid.set(presented, check);
      } else check = { presented, valid: false };
    }
  }
  r[CHECK] = check;
  return check;
}

/**
 * What the keys guard: the requests that create or destroy jobs (POST /download,
 * POST /normalize, DELETE /jobs/:id). Download ids can be derived from a URL, so an open
 * DELETE would let anyone remove another client's results. Reads stay open.
 */
function needsKey(req: Request): boolean {
  return isSubmission(req) || (req.method === 'DELETE' && routeKey(req).startsWith('/jobs/'));
}

/** With API_KEYS set, the writes need a valid key (401 otherwise); with it empty, a no-op. */
export function apiKeyGuard(config: Pick<Config, 'apiKeys'>): RequestHandler {
  return (req, res, next) => {
    if (config.apiKeys.length === 0 || !needsKey(req)) return next();
    const key = checkApiKey(config, req);
    if (key.valid) return next();
    const refuse = () => {
      res.setHeader('WWW-Authenticate', 'Bearer realm="media-jobs"');
      next(
        new AppError(
          'auth.unauthorized',
          key.presented === null
            ? 'this endpoint needs an API key: Authorization: Bearer <key> or X-API-Key: <key>'
            : 'the API key is not valid',
          { status: 401 },
        ),
      );
    };
    // A count the route would have made: made now, so an exhausted budget answers 429 as before.
    if (hasPendingLimit(req)) settlePendingLimit(req, res).then(refuse, next);
    else refuse();
  };
}
