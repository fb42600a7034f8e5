import express, { type Express } from 'express';
import type { GatewayDeps } from './deps.js';
import { errorHandler, notFoundRoute } from './errors.js';
import { requestLog } from './request-log.js';
import { adminRoutes } from './routes/admin.js';
import { downloadRoutes } from './routes/downloads.js';
import { healthRoutes } from './routes/health.js';
import { jobEventRoutes } from './routes/job-events.js';
import { jobRoutes } from './routes/jobs.js';
import { normalizeRoutes } from './routes/normalize.js';

/** The HTTP API of DESIGN.md. Routes are thin; the work is in libs and the workers. */
export function createApp(deps: GatewayDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  // Job records change as jobs progress, so a JSON ETag saves clients little; hashing every
  // body costs the hot paths. Files keep theirs (sendFile sets its own).
  app.set('etag', false);
  app.use(requestLog(deps.logger));
  app.use(healthRoutes(deps));
  app.use(downloadRoutes(deps));
  app.use(normalizeRoutes(deps));
  app.use(jobRoutes(deps));
  app.use(jobEventRoutes(deps));
  app.use(adminRoutes(deps));
  app.use(notFoundRoute);
  app.use(errorHandler(deps.logger));
  return app;
}
