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

/** helmet's headers with an API policy; result files may be played by pages on other origins. */
export function securityHeaders(): RequestHandler {
  const base = helmet({
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
  });
  return (req, res, next) => {
    base(req, res, (err?: unknown) => {
      if (err) return next(err);
      // An <audio>/<video> on another site may play a result file; no credentials ride on it.
      if (FILE_ROUTE.test(routeKey(req))) res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
      next();
    });
  };
}
