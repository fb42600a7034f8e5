import type { RequestHandler } from 'express';
import helmet from 'helmet';
import { routeKey } from './request-kind.js';

/**
 * The API answers JSON and files, never pages: a policy that allows nothing. A route that
 * serves a page (such as `/docs`) replaces it with its own, e.g.
 * `res.setHeader('Content-Security-Policy', DOCS_CONTENT_SECURITY_POLICY)` or
 * `router.get('/docs', contentSecurityPolicy(DOCS_CONTENT_SECURITY_POLICY), ...)`: these
 * headers are set before any route runs, so the route's value wins.
 */
export const API_CONTENT_SECURITY_POLICY =
  "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/** For a swagger-ui page served from our own origin (its scripts, styles and the spec). */
export const DOCS_CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/**
 * For the web console at `/`: only the gateway's own script, stylesheet, API and result files
 * (`media-src` for the player), no inline code or styles, and `require-trusted-types-for`
 * so the page cannot write HTML strings into the DOM.
 */
export const CONSOLE_CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; require-trusted-types-for 'script'";

/** Route-level hook: replaces the API policy for the responses of one route. */
export function contentSecurityPolicy(policy: string): RequestHandler {
  return (_req, res, next) => {
    res.setHeader('Content-Security-Policy', policy);
    next();
  };
}

const FILE_ROUTE = /^\/jobs\/[^/]+\/file$/;

/** The headers a helmet middleware sets, run once against a recorder instead of on every request. */
function recordHeaders(middleware: RequestHandler): (readonly [string, string])[] {
  const headers = new Map<string, readonly [string, string]>();
  const recorder = {
    setHeader(name: string, value: string | number | readonly string[]) {
      headers.set(name.toLowerCase(), [name, String(value)]);
    },
    removeHeader(name: string) {
      headers.delete(name.toLowerCase());
    },
  };
  let failed: unknown = null;
  middleware(
    {} as Parameters<RequestHandler>[0],
    recorder as unknown as Parameters<RequestHandler>[1],
    (err) => {
      if (err) failed = err;
    },
  );
  if (failed) throw failed instanceof Error ? failed : new Error(String(failed));
  return [...headers.values()];
}

/**
 * helmet's headers with an API policy; result files may be played by pages on other origins.
 * helmet runs once at start; each request gets the recorded headers (the same names, values
 * and order) from a prepared array.
 */
export function securityHeaders(): RequestHandler {
  const headers = recordHeaders(
    helmet({
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'none'"],
          frameAncestors: ["'none'"],
          baseUri: ["'none'"],
          formAction: ["'none'"],
        },
      },
      // Only HTTPS responses make browsers keep it; other hosts of the domain are not ours to pin.
      strictTransportSecurity: { maxAge: 31_536_000, includeSubDomains: false },
    }),
  );
  const count = headers.length;
  return (req, res, next) => {
    for (let i = 0; i < count; i += 1) {
      const header = headers[i]!;
      res.setHeader(header[0], header[1]);
    }
    // An <audio>/<video> on another site may play a result file; no credentials ride on it.
    if (req.url.length > 10 && FILE_ROUTE.test(routeKey(req)))
      res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
    next();
  };
}
