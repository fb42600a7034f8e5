/**
 * One error type for everything the system reports to a user or uses to decide a retry.
 * `code` is dotted (`download.unavailable`), `status` is the HTTP status the gateway answers
 * with, `retryable` tells a worker whether another delivery may succeed.
 */
export class AppError extends Error {
  override readonly name = 'AppError';
  readonly code: string;
  readonly status: number;
  readonly retryable: boolean;
  readonly details: unknown;

  constructor(
    code: string,
    message: string,
    options: { status?: number; retryable?: boolean; details?: unknown; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status ?? 500;
    this.retryable = options.retryable ?? false;
    this.details = options.details;
  }

  toJSON(): { code: string; message: string; details?: unknown } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export const badRequest = (code: string, message: string, details?: unknown): AppError =>
  new AppError(code, message, { status: 400, details });

export const notFound = (code: string, message: string): AppError =>
  new AppError(code, message, { status: 404 });

export const unavailable = (code: string, message: string, cause?: unknown): AppError =>
  new AppError(code, message, { status: 503, retryable: true, cause });

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

/** A short message for any thrown value, for logs and job errors. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
