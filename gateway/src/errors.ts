import type { ErrorRequestHandler, RequestHandler } from 'express';
import { AppError, backendOutage, isAppError, type BackendConnections, type Logger } from '@media-jobs/libs';

const MULTIPART_ERRORS =
  /^(Unexpected end of (form|file)|Malformed (part header|content type|urlencoded form)|Multipart: Boundary not found|Unsupported content type|Missing Content-Type|Request (aborted|closed))/;

/** Body-parser and multer errors carry a `type`/`code`; map them to our error codes. */
function fromFrameworkError(err: unknown): AppError | null {
  if (typeof err !== 'object' || err === null) return null;
  const e = err as { type?: string; status?: number; code?: string; message?: string; field?: string };
  if (e.type === 'entity.parse.failed')
    return new AppError('request.invalid_json', 'the body is not valid JSON', { status: 400 });
  if (e.type === 'entity.too.large' || e.code === 'LIMIT_FILE_SIZE')
    return new AppError('request.too_large', 'the request body is larger than allowed', { status: 413 });
  if (e.type === 'encoding.unsupported' || e.type === 'charset.unsupported')
    return new AppError('request.unsupported_encoding', e.message ?? 'unsupported encoding', { status: 415 });
  // busboy 1.6 (under multer) throws plain Errors with no code for a broken multipart body
  // (lib/index.js, lib/types/multipart.js), and multer 2.5 does the same for a client gone
  // mid-upload ('Request aborted', 'Request closed'); only their text tells them apart.
  if (err instanceof Error && MULTIPART_ERRORS.test(err.message))
    return new AppError('request.invalid_multipart', `invalid multipart body: ${err.message}`, {
      status: 400,
    });
  if (
    (typeof e.code === 'string' && e.code.startsWith('LIMIT_')) ||
    (err instanceof Error && err.name === 'MulterError')
  )
    return new AppError(
      'request.invalid_multipart',
      `${e.message ?? 'invalid multipart body'}${e.field ? ` (${e.field})` : ''}`,
      { status: 400 },
    );
  if (typeof e.status === 'number' && e.status >= 400 && e.status < 500)
    return new AppError('request.invalid', e.message ?? 'invalid request', { status: e.status });
  return null;
}

const BACKEND_NAMES = { redis: 'Redis', nats: 'NATS' } as const;

/** Redis or NATS unreachable (by error class, code or connection state): a 503 the client may retry, never a 500. */
function fromBackendError(err: unknown, connections: BackendConnections): AppError | null {
  const outage = backendOutage(err, connections);
  if (!outage) return null;
  const which = outage.backend ? BACKEND_NAMES[outage.backend] : 'a backing service (Redis or NATS)';
  return new AppError('backend.unavailable', `${which} is not reachable; try again shortly`, {
    status: 503,
    retryable: true,
    cause: err,
  });
}

export const notFoundRoute: RequestHandler = (req, _res, next) => {
  next(new AppError('route.not_found', `no route for ${req.method} ${req.path}`, { status: 404 }));
};

/** The one error handler: every error becomes `{"error": {code, message, details?}}` with its status. */
export const errorHandler =
  (logger: Logger, connections: BackendConnections = {}): ErrorRequestHandler =>
  (err, req, res, _next) => {
    const appError = isAppError(err) ? err : (fromFrameworkError(err) ?? fromBackendError(err, connections));
    if (!appError || appError.status >= 500) {
      logger.error({ err, req: { method: req.method, url: req.originalUrl } }, 'Request failed');
    }
    const status = appError?.status ?? 500;
    if (status === 503) res.setHeader('Retry-After', '5');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.status(status).json({
      error: appError ? appError.toJSON() : { code: 'internal', message: 'internal error' },
    });
  };
