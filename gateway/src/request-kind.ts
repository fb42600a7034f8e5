import type { Request } from 'express';

/** The path as Express routes it: case-insensitive, a trailing slash ignored. */
export function routeKey(req: Request): string {
  return req.path.toLowerCase().replace(/\/+$/, '') || '/';
}

/** POST /download and POST /normalize, in every spelling Express would route to them. */
export function isSubmission(req: Request): boolean {
  const path = routeKey(req);
  return req.method === 'POST' && (path === '/download' || path === '/normalize');
}
