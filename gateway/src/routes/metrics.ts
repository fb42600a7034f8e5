import { Router } from 'express';
import type { GatewayDeps } from '../deps.js';
import { GatewayMetrics, type MetricsOptions } from '../metrics.js';

/** `GET /metrics`: Prometheus text format; 200 even while a backend is down (see `media_jobs_backend_up`). */
export function metricsRoutes(deps: GatewayDeps, options: Partial<MetricsOptions> = {}): Router {
  const metrics = new GatewayMetrics(deps, options);
  const router = Router();
  router.get('/metrics', async (_req, res) => {
    const body = await metrics.scrape();
    res.setHeader('Cache-Control', 'no-store');
    res.type(metrics.registry.contentType).send(body);
  });
  return router;
}
