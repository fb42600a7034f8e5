import {
  AppError,
  errorMessage,
  releaseJobFiles,
  unavailable,
  type JobKind,
  type StoredJob,
} from '@media-jobs/libs';
import { registerCallback } from './callbacks.js';
import type { GatewayDeps } from './deps.js';
import { jobView } from './job-view.js';

/**
 * Test-only fault: `MEDIA_JOBS_TEST_FAULT=crash_before_enqueue` kills the gateway (SIGKILL)
 * right after a new job's record is written and before its request is queued, the window a
 * crash leaves a record with no request (the janitor's reconciler repairs it).
 */
// A test hook, not a setting: it stays out of the config schema and the docs.
// eslint-disable-next-line no-restricted-properties
const CRASH_BEFORE_ENQUEUE = process.env.MEDIA_JOBS_TEST_FAULT === 'crash_before_enqueue';

export interface Submission {
  status: 200 | 202;
  body: Record<string, unknown>;
  created: boolean;
}

export interface SubmitHooks {
  /** Runs only when no live job exists, before one is created (e.g. the URL's DNS check). */
  beforeCreate?: () => Promise<void>;
  /** Runs after the new job is claimed and before it is queued (e.g. to retain an upload). */
  onCreated?: () => Promise<void>;
  /**
   * A checked `callback_url`: added to the callbacks of the job returned, new or live (it
   * never changes the job id). Added before a new job is queued.
   */
  callbackUrl?: URL | null;
  /** Reads the live job in place of `store.peek` (the rate limit's budgeted read). */
  peek?: () => Promise<StoredJob | null>;
}

/**
 * The shared 202/200 rule of `POST /download` and `POST /normalize`: a live job is a cache
 * hit, answered after one round trip; otherwise the id is claimed atomically, the winner
 * queues the job and everyone else gets the live job as a cache hit. If the queue is
 * unreachable the new record is removed again (with any upload reference) and the error
 * (503) goes up.
 */
export async function submitJob(
  deps: Pick<GatewayDeps, 'store' | 'queue' | 'events' | 'redis' | 'files' | 'nc'>,
  kind: JobKind,
  id: string,
  request: Record<string, unknown>,
  hooks: SubmitHooks = {},
): Promise<Submission> {
  const hit = async (job: StoredJob): Promise<Submission> => {
    if (hooks.callbackUrl) await registerCallback(deps, job.record, hooks.callbackUrl);
    deps.events.job(kind, id, 'cache_hit', { status: job.record.status });
    return { status: 200, body: jobView(job.record, true), created: false };
  };
  const live = await (hooks.peek ? hooks.peek() : deps.store.peek(kind, id));
  if (live) return hit(live);
  await hooks.beforeCreate?.();
  const { created, job } = await deps.store.create(kind, id, request);
  if (!created) return hit(job);
  if (CRASH_BEFORE_ENQUEUE) process.kill(process.pid, 'SIGKILL');
  let announced = false;
  try {
    await hooks.onCreated?.();
    if (hooks.callbackUrl) await registerCallback(deps, job.record, hooks.callbackUrl);
    // Before the request goes on the queue, over the same connection: a subscriber sees
    // `queued` before any worker's `started`.
    deps.events.job(kind, id, 'queued', { request, expires_at: job.record.expires_at });
    announced = true;
    await deps.queue.enqueue(job.record);
  } catch (err) {
    // Not queued: undo the claim, and any upload reference `onCreated` took.
    await deps.store.remove(kind, id).catch(() => null);
    await releaseJobFiles(deps.redis, deps.files, kind, id).catch(() => null);
    // A subscriber that saw `queued` learns it did not go through.
    if (announced) {
      const error = err instanceof AppError ? err : unavailable('queue.unavailable', errorMessage(err));
      deps.events.job(kind, id, 'failed', {
        error: { code: error.code, message: error.message },
        attempts: 0,
      });
    }
    throw err;
  }
  return { status: 202, body: jobView(job.record, false), created };
}
