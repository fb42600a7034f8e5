import type { RequestHandler, Response } from 'express';
import type { Logger } from '@media-jobs/libs';

const STARTED = Symbol('requestStarted');
type Timed = Response & { [STARTED]?: number };

/**
 * One log line per request when it finishes, in pino-http's field names (`req`, `res`,
 * `responseTime`) so log tools read it the same way: errors at `error`, client errors at
 * `info`, the rest at `debug`. Much cheaper than a child logger per request, which matters
 * on the cache-hit path: one shared `finish` listener (no closure per request), and nothing
 * built when the level is off.
 */
export function requestLog(logger: Logger): RequestHandler {
  function onFinish(this: Timed): void {
    const status = this.statusCode;
    const level = status >= 500 ? 'error' : status >= 400 ? 'info' : 'debug';
    const req = this.req;
    if (!logger.isLevelEnabled(level) || (req.url === '/health' && status < 400)) return;
    const responseTime = Math.round((performance.now() - (this[STARTED] ?? 0)) * 1000) / 1000;
    logger[level](
      { req: { method: req.method, url: req.originalUrl }, res: { statusCode: status }, responseTime },
      'request completed',
    );
  }
  return (_req, res, next) => {
    (res as Timed)[STARTED] = performance.now();
    res.on('finish', onFinish);
    next();
  };
}
