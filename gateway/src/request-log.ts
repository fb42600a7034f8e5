import type { RequestHandler } from 'express';
import type { Logger } from '@media-jobs/libs';

/**
 * One log line per request when it finishes, in pino-http's field names (`req`, `res`,
 * `responseTime`) so log tools read it the same way: errors at `error`, client errors at
 * `info`, the rest at `debug`. Much cheaper than a child logger per request, which matters
 * on the cache-hit path.
 */
export function requestLog(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    res.once('finish', () => {
      const status = res.statusCode;
      const level = status >= 500 ? 'error' : status >= 400 ? 'info' : 'debug';
      if (!logger.isLevelEnabled(level) || (req.url === '/health' && status < 400)) return;
      const responseTime = Number((process.hrtime.bigint() - started) / 1000n) / 1000;
      logger[level](
        { req: { method: req.method, url: req.originalUrl }, res: { statusCode: status }, responseTime },
        'request completed',
      );
    });
    next();
  };
}
