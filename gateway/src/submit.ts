import { releaseJobFiles, type JobKind } from '@media-jobs/libs';
import type { GatewayDeps } from './deps.js';
import { jobView } from './job-view.js';

export interface Submission {
  status: 200 | 202;
  body: Record<string, unknown>;
  created: boolean;
}

/**
 * The shared 202/200 rule of `POST /download` and `POST /normalize`: claim the id
 * atomically; the winner queues the job, everyone else gets the live job as a cache hit.
 * `onCreated` runs after the claim and before the job is queued (e.g. to retain an upload).
 * If the queue is unreachable the new record is removed again (with any upload reference)
 * and the error (503) goes up.
 */
export async function submitJob(
  deps: Pick<GatewayDeps, 'store' | 'queue' | 'events' | 'redis' | 'storage'>,
  kind: JobKind,
  id: string,
  request: Record<string, unknown>,
  onCreated?: () => Promise<void>,
): Promise<Submission> {
  const { created, job } = await deps.store.claim(kind, id, request);
  if (!created) {
    deps.events.job(kind, id, 'cache_hit', { status: job.record.status });
    return { status: 200, body: jobView(job.record, true), created };
  }
  try {
    await onCreated?.();
    await deps.queue.enqueue(job.record);
  } catch (err) {
    // Not queued: undo the claim, and any upload reference `onCreated` took.
    await deps.store.remove(kind, id).catch(() => null);
    await releaseJobFiles(deps.redis, deps.storage, kind, id).catch(() => null);
    throw err;
  }
  deps.events.job(kind, id, 'queued', { request, expires_at: job.record.expires_at });
  return { status: 202, body: jobView(job.record, false), created };
}
