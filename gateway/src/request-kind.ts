import type { Request } from 'express';

/** The path as Express routes it: case-insensitive, a trailing slash ignored. */
export function routeKey(req: Request): string {
  return req.path.toLowerCase().replace(/\/+$/, '') || '/';
}

/**
 * POST /download and POST /normalize, in every spelling Express would route to them, and
 * GET /probe, which runs yt-dlp like a submission: they share the submission budget and,
 * with API_KEYS set, need a key.
 */
export function isSubmission(req: Request): boolean {
  const path = routeKey(req);
  if (req.method === 'GET') return path === '/probe';
  return req.method === 'POST' && (path === '/download' || path === '/normalize');
}
