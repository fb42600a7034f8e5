/** The gateway's HTTP API as the console uses it: same origin, JSON, the API key when there is one. */

export type JobKind = 'download' | 'normalize';
export type JobStatus = 'queued' | 'processing' | 'completed' | 'failed';

export interface JobError {
  code: string;
  message: string;
}

/** A job as `GET /jobs/:id` shows it (README "HTTP API"). */
export interface Job {
  id: string;
  kind: JobKind;
  status: JobStatus;
  progress: number;
  created_at: string;
  updated_at: string;
  expires_at: string;
  request: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: JobError;
  cache_hit?: boolean;
}

export interface JobPage {
  jobs: Job[];
  next_cursor: string | null;
}

export interface Deleted {
  id: string;
  files: string[];
  bytes_freed: number;
}

/** An error answer (`{"error": {code, message, details?}}`) or no answer at all (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const KEY_ITEM = 'media-jobs.api-key';
let memoryKey: string | null = null;

/** The API key for this browser session: sessionStorage, or memory where storage is refused. */
export const apiKey = {
  get(): string | null {
    try {
      return sessionStorage.getItem(KEY_ITEM) ?? memoryKey;
    } catch {
      return memoryKey;
    }
  },
  set(key: string): void {
    memoryKey = key;
    try {
      sessionStorage.setItem(KEY_ITEM, key);
    } catch {
      // Storage refused (a private window's policy): the key lives until the page closes.
    }
  },
  clear(): void {
    memoryKey = null;
    try {
      sessionStorage.removeItem(KEY_ITEM);
    } catch {
      // Nothing stored.
    }
  },
};

/** The key goes in a header, never in a URL, where it would land in logs and history. */
function headers(extra: Record<string, string> = {}): Headers {
  const result = new Headers({ accept: 'application/json', ...extra });
  const key = apiKey.get();
  if (key) {
    try {
      result.set('authorization', `Bearer ${key}`);
    } catch {
      throw new ApiError(0, 'console.bad_key', 'the API key has characters an HTTP header cannot carry');
    }
  }
  return result;
}

function errorFrom(status: number, text: string, retryAfter: string | null): ApiError {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const error = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)
    ?.error;
  let message = typeof error?.message === 'string' ? error.message : `the gateway answered ${status}`;
  if (status === 429 && retryAfter) message += ` (try again in ${retryAfter} s)`;
  const code = typeof error?.code === 'string' ? error.code : `http.${status}`;
  return new ApiError(status, code, message, error?.details);
}

const UNREACHABLE = 'the gateway did not answer; check your connection and that it is running';

/** One request; resolves to the status and the parsed JSON body, rejects with an ApiError. */
export async function call<T>(
  method: string,
  path: string,
  json?: unknown,
): Promise<{ status: number; body: T }> {
  const init: RequestInit = {
    method,
    headers: headers(json === undefined ? {} : { 'content-type': 'application/json' }),
    cache: 'no-store',
  };
  if (json !== undefined) init.body = JSON.stringify(json);
  let res: Response;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'console.unreachable', UNREACHABLE);
  }
  const text = await res.text().catch(() => '');
  if (!res.ok) throw errorFrom(res.status, text, res.headers.get('retry-after'));
  return { status: res.status, body: JSON.parse(text) as T };
}

/**
 * A multipart upload with progress (fetch cannot report upload progress; XMLHttpRequest can).
 */
export function upload<T>(
  path: string,
  form: FormData,
  onProgress: (fraction: number) => void,
): Promise<{ status: number; body: T }> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    let hdrs: Headers;
    try {
      hdrs = headers();
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    hdrs.forEach((value, name) => xhr.setRequestHeader(name, value));
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable && e.total > 0) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve({ status: xhr.status, body: JSON.parse(xhr.responseText) as T });
        } catch {
          reject(
            new ApiError(xhr.status, 'console.bad_answer', 'the gateway answered with something unreadable'),
          );
        }
      } else reject(errorFrom(xhr.status, xhr.responseText, xhr.getResponseHeader('retry-after')));
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'console.unreachable', UNREACHABLE)));
    xhr.addEventListener('timeout', () => reject(new ApiError(0, 'console.unreachable', UNREACHABLE)));
    xhr.send(form);
  });
}

export const jobPath = (id: string): string => `/jobs/${encodeURIComponent(id)}`;
