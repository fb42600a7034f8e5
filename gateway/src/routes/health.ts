import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { Router } from 'express';
import { natsConnected } from '@media-jobs/libs';
import type { GatewayDeps } from '../deps.js';

const started = Date.now();

async function check(fn: () => Promise<unknown>, timeoutMs = 1500): Promise<{ ok: boolean; error?: string }> {
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs).unref(),
      ),
    ]);
    return { ok: true };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

/** `GET /health` (the process is alive) and `GET /ready` (NATS, Redis and DATA_DIR all answer). */
export function healthRoutes(deps: GatewayDeps): Router {
  const router = Router();
  router.get('/health', (_req, res) => {
    res.json({ status: 'ok', service: 'gateway', uptime_s: Math.round((Date.now() - started) / 1000) });
  });
  router.get('/ready', async (_req, res) => {
    const [nats, redis, dataDir] = await Promise.all([
      check(async () => {
        // While disconnected, flush() would wait for the reconnect: answer at once instead.
        if (!natsConnected(deps.nc)) throw new Error('not connected');
        await deps.nc.flush();
      }),
      check(() => deps.redis.ping()),
      check(() => access(deps.storage.tmp, constants.W_OK)),
    ]);
    const checks = { nats, redis, data_dir: dataDir };
    const ready = nats.ok && redis.ok && dataDir.ok;
    if (!ready) res.setHeader('Retry-After', '5');
    res.status(ready ? 200 : 503).json(
      ready
        ? { status: 'ready', checks }
        : {
            error: {
              code: 'service.not_ready',
              message: 'a backing service is not reachable',
              details: checks,
            },
          },
    );
  });
  return router;
}
