import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { AppError, type Config } from '@media-jobs/libs';
import { isSubmission, routeKey } from './request-kind.js';

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** The key a request presents: `Authorization: Bearer <key>` or `X-API-Key: <key>`, or null. */
export function presentedApiKey(req: Request): string | null {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.get('authorization') ?? '');
  if (bearer?.[1]) return bearer[1];
  const header = req.get('x-api-key')?.trim();
  return header ? header : null;
}

/**
 * Compared on sha256 digests with timingSafeEqual, against every key without stopping at a
 * match: neither the length nor which key matched shows in the timing.
 */
export function isValidApiKey(keys: readonly string[], presented: string): boolean {
  const wanted = digest(presented);
  let match = false;
  for (const key of keys) match = timingSafeEqual(digest(key), wanted) || match;
  return match;
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
    const key = presentedApiKey(req);
    if (key !== null && isValidApiKey(config.apiKeys, key)) return next();
    res.setHeader('WWW-Authenticate', 'Bearer realm="media-jobs"');
    next(
      new AppError(
        'auth.unauthorized',
        key === null
          ? 'this endpoint needs an API key: Authorization: Bearer <key> or X-API-Key: <key>'
          : 'the API key is not valid',
        { status: 401 },
      ),
    );
  };
}
