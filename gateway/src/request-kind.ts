import type { Request } from 'express';

/** A path Express would route elsewhere than itself: upper-case letters or a trailing slash. */
const NOT_CANONICAL = /[A-Z]|\/$/;

/** The path as Express routes it: case-insensitive, a trailing slash ignored. */
export function routeKey(req: Request): string {
  const path = req.path;
  return NOT_CANONICAL.test(path) ? path.toLowerCase().replace(/\/+$/, '') || '/' : path;
}

/** `isSubmission` for a method and a `routeKey` already at hand. */
export function isSubmissionPath(method: string, path: string): boolean {
  if (method === 'GET') return path === '/probe';
  return method === 'POST' && (path === '/download' || path === '/normalize');
}

/**
 * POST /download and POST /normalize, in every spelling Express would route to them, and
 * GET /probe, which runs yt-dlp like a submission: they share the submission budget and,
 * with API_KEYS set, need a key.
 */
export function isSubmission(req: Request): boolean {
  return isSubmissionPath(req.method, routeKey(req));
}
