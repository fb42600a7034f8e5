import { Router } from 'express';
import type { GatewayDeps } from '../deps.js';
import { createJobEventHub, type HubEvent } from '../job-event-hub.js';
import { jobView } from '../job-view.js';
import { jobIdParam, requireJob } from './job-lookup.js';

const TERMINAL_EVENTS = new Set(['completed', 'failed', 'deleted']);
const TERMINAL_STATUSES = new Set(['completed', 'failed']);

/**
 * `GET /jobs/:id/events`: Server-Sent Events. The current state first (`event: state`), then
 * every live event of the job until it ends, with a heartbeat comment so proxies keep the
 * connection open. The subscription starts before the state is read, so nothing falls between.
 * All watchers of a job share one NATS subscription (`job-event-hub.ts`).
 */
export function jobEventRoutes(deps: GatewayDeps): Router {
  const heartbeatMs = deps.config.sseHeartbeatMs;
  const hub = createJobEventHub(deps.nc);
  const router = Router();
  router.get('/jobs/:id/events', async (req, res) => {
    const id = jobIdParam(req);
    const buffered: HubEvent[] = [];
    // Until the state is written, events wait in `buffered`; then `sink.live` writes them.
    const sink: { live?: (e: HubEvent) => void } = {};
    const close = hub.watch(id, (event) => {
      if (sink.live) sink.live(event);
      else buffered.push(event);
    });
    let job;
    try {
      job = await requireJob(deps, id);
    } catch (err) {
      close();
      throw err;
    }
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    if (req.method === 'HEAD') {
      // No body goes with HEAD, so writes would never flush the headers: answer and end now.
      close();
      res.end();
      return;
    }
    res.write(`event: state\ndata: ${JSON.stringify(jobView(job.record))}\n\n`);
    const heartbeat = setInterval(
      () => res.write(`: heartbeat ${new Date().toISOString()}\n\n`),
      heartbeatMs,
    );
    const end = () => {
      clearInterval(heartbeat);
      close();
      res.end();
    };
    res.on('close', () => {
      clearInterval(heartbeat);
      close();
    });
    if (TERMINAL_STATUSES.has(job.record.status)) {
      end();
      return;
    }
    const live = (event: HubEvent) => {
      res.write(event.frame);
      if (TERMINAL_EVENTS.has(event.type)) end();
    };
    sink.live = live;
    // Events that arrived while the state was read; those older than the state are stale.
    const since = Date.parse(job.record.updated_at);
    for (const event of buffered.splice(0)) {
      const at = Date.parse((JSON.parse(event.data) as { at?: string }).at ?? '');
      if (!(at < since)) live(event);
    }
  });
  return router;
}
