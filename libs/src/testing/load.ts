import type { JobRecord } from '../job-record.js';
import { WaitTimeoutError, waitUntil } from './wait.js';

/** One `POST /download` as a client saw it. */
export interface Submitted {
  status: number;
  /** Wall time from send to the end of the body. */
  ms: number;
  retryAfter: string | null;
  id?: string;
  body: unknown;
}

/** Submits a download over HTTP and times it; never throws for an HTTP status. */
export async function postDownload(gatewayUrl: string, url: string, quality = 'best'): Promise<Submitted> {
  const started = performance.now();
  const res = await fetch(`${gatewayUrl}/download`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url, quality }),
    signal: AbortSignal.timeout(30_000),
  });
  const body = (await res.json().catch(() => null)) as { id?: string } | null;
  const submitted: Submitted = {
    status: res.status,
    ms: performance.now() - started,
    retryAfter: res.headers.get('retry-after'),
    body,
  };
  if (typeof body?.id === 'string') submitted.id = body.id;
  return submitted;
}

/** GET /jobs/:id, or null on any failure (the gateway may be down for a moment). */
export async function getJob(gatewayUrl: string, id: string): Promise<JobRecord | null> {
  try {
    const res = await fetch(`${gatewayUrl}/jobs/${id}`, { signal: AbortSignal.timeout(5000) });
    return res.ok ? ((await res.json()) as JobRecord) : null;
  } catch {
    return null;
  }
}

/**
 * Polls every job until all are completed or failed, or the time is up. Returns the last
 * record seen of each (null: never seen), so a caller can report what did not finish.
 */
export async function waitForJobs(
  gatewayUrl: string,
  ids: Iterable<string>,
  timeoutMs: number,
): Promise<Map<string, JobRecord | null>> {
  const latest = new Map<string, JobRecord | null>([...ids].map((id) => [id, null]));
  const pending = new Set(latest.keys());
  const finished = async () => {
    await Promise.all(
      [...pending].map(async (id) => {
        const record = await getJob(gatewayUrl, id);
        if (record) latest.set(id, record);
        if (record?.status === 'completed' || record?.status === 'failed') pending.delete(id);
      }),
    );
    return pending.size === 0;
  };
  try {
    await waitUntil(`${latest.size} job(s) to finish`, finished, { timeoutMs, intervalMs: 250 });
  } catch (err) {
    // The caller reports what did not finish from the records themselves.
    if (!(err instanceof WaitTimeoutError)) throw err;
  }
  return latest;
}

/**
 * Fault tests poll and submit far faster than one client may in production; rate limits are
 * tested on their own, so these turn them off.
 */
export const NO_RATE_LIMITS = { RATE_LIMIT_PER_MINUTE: '0', RATE_LIMIT_READS_PER_MINUTE: '0' } as const;
