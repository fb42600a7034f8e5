import { Router } from 'express';
import { jobEventsFilter, type JobKind } from '@media-jobs/libs';
import type { GatewayDeps } from '../deps.js';
import { jobView } from '../job-view.js';
import { jobIdParam, requireJob } from './job-lookup.js';

const TERMINAL_EVENTS = new Set(['completed', 'failed', 'deleted']);
const TERMINAL_STATUSES = new Set(['completed', 'failed']);

/**
 * `GET /jobs/:id/events`: Server-Sent Events. The current state first (`event: state`), then
 * every live event of the job until it ends, with a heartbeat comment so proxies keep the
 * connection open. The subscription starts before the state is read, so nothing falls between.
 */
export function jobEventRoutes(deps: GatewayDeps): Router {
  const heartbeatMs = deps.config.sseHeartbeatMs;
  const router = Router();
  router.get('/jobs/:id/events', async (req, res) => {
    const id = jobIdParam(req);
    const kinds: JobKind[] = ['download', 'normalize'];
    const buffered: { type: string; data: string }[] = [];
    // Until the state is written, events wait in `buffered`; then `sink.live` writes them.
    const sink: { live?: (e: { type: string; data: string }) => void } = {};
    const subs = kinds.map((kind) =>
      deps.nc.subscribe(jobEventsFilter(kind, id), {
        callback: (err, msg) => {
          if (err) return;
          const type = msg.subject.slice(msg.subject.lastIndexOf('.') + 1);
          const event = { type, data: msg.string() };
          if (sink.live) sink.live(event);
          else buffered.push(event);
        },
      }),
    );
    const close = () => subs.forEach((s) => s.unsubscribe());
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
    const live = (event: { type: string; data: string }) => {
      res.write(`event: ${event.type}\ndata: ${event.data}\n\n`);
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
