import express, { type Express } from 'express';
import { apiKeyGuard } from './api-keys.js';
import type { GatewayDeps } from './deps.js';
import { errorHandler, notFoundRoute } from './errors.js';
import { guards } from './guards.js';
import { rateLimits, settleLimitBeforeError } from './rate-limit.js';
import { requestLog } from './request-log.js';
import { adminRoutes } from './routes/admin.js';
import { consoleRoutes } from './routes/console.js';
import { docsRoutes } from './routes/docs.js';
import { downloadRoutes } from './routes/downloads.js';
import { healthRoutes } from './routes/health.js';
import { jobEventRoutes } from './routes/job-events.js';
import { jobRoutes } from './routes/jobs.js';
import { metricsRoutes } from './routes/metrics.js';
import { normalizeRoutes } from './routes/normalize.js';
import { probeRoutes } from './routes/probe.js';
import { securityHeaders } from './security-headers.js';

/** The HTTP API of DESIGN.md. Routes are thin; the work is in libs and the workers. */
export function createApp(deps: GatewayDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  // TRUST_PROXY names the load balancers whose X-Forwarded-For gives req.ip (rate-limit identity).
  const { trustProxy } = deps.config;
  app.set('trust proxy', Array.isArray(trustProxy) ? [...trustProxy] : trustProxy);
  // Job records change as jobs progress, so a JSON ETag saves clients little; hashing every
  // body costs the hot paths. Files keep theirs (sendFile sets its own).
  app.set('etag', false);
  // The request log, then the abuse guards before every route: headers on every answer,
  // limits and keys before any body is read (one router layer for the four).
  // Scrapers, like probes, are not rate limited (see rate-limit.ts).
  app.use(guards(requestLog(deps.logger), securityHeaders(), rateLimits(deps), apiKeyGuard(deps.config)));
  // The hot paths first: no two of these routers answer the same method and path, so their
  // order only decides how many a request passes before its own.
  app.use(downloadRoutes(deps));
  app.use(jobRoutes(deps));
  app.use(healthRoutes(deps));
  app.use(metricsRoutes(deps));
  app.use(normalizeRoutes(deps));
  app.use(probeRoutes(deps));
  app.use(jobEventRoutes(deps));
  app.use(adminRoutes(deps));
  app.use(docsRoutes());
  app.use(consoleRoutes(deps.config));
  app.use(notFoundRoute);
  // A request whose rate-limit count was left for its route's read is counted before any error answer.
  app.use(settleLimitBeforeError);
  app.use(errorHandler(deps.logger, { redis: deps.redis }));
  return app;
}
