import { z } from 'zod';
import { JOB_KINDS, JOB_STATUSES, jobErrorSchema } from './job-record.js';

/**
 * The payload of every event on `events.>`. Each is JSON with `v: 1`, `type` and `at`; job
 * events add `job_id` and `kind`. Subscribers import these schemas to parse what they receive.
 */
const base = { v: z.literal(1), at: z.iso.datetime() };
const job = { ...base, job_id: z.string(), kind: z.enum(JOB_KINDS) };

export const jobQueuedEvent = z.object({
  ...job,
  type: z.literal('queued'),
  request: z.record(z.string(), z.unknown()),
  expires_at: z.iso.datetime(),
  /**
   * Absent for a new submission; `retry` after a failure that may pass, `handed_back` by a worker
   * that stopped, `recovered` by the janitor's reconciler for a job whose request was lost.
   */
  reason: z.enum(['retry', 'handed_back', 'recovered']).optional(),
  /** With `retry`: the delivery that failed, the delay before the next one, and why it failed. */
  attempt: z.number().int().min(1).optional(),
  retry_in_ms: z.number().int().min(0).optional(),
  error: jobErrorSchema.optional(),
});
export const jobCacheHitEvent = z.object({
  ...job,
  type: z.literal('cache_hit'),
  status: z.enum(JOB_STATUSES),
});
export const jobStartedEvent = z.object({
  ...job,
  type: z.literal('started'),
  attempt: z.number().int().min(1),
});
export const jobProgressEvent = z.object({
  ...job,
  type: z.literal('progress'),
  progress: z.number().min(0).max(100),
  /** What the worker is doing, e.g. `downloading`, `merging`, `normalizing`. */
  stage: z.string().optional(),
});
export const jobCompletedEvent = z.object({
  ...job,
  type: z.literal('completed'),
  result: z.record(z.string(), z.unknown()),
  duration_ms: z.number().min(0),
});
export const jobFailedEvent = z.object({
  ...job,
  type: z.literal('failed'),
  error: jobErrorSchema,
  attempts: z.number().int().min(0),
});
export const jobDeletedEvent = z.object({
  ...job,
  type: z.literal('deleted'),
  files: z.array(z.string()),
  bytes_freed: z.number().int().min(0),
});

export const jobEventSchema = z.discriminatedUnion('type', [
  jobQueuedEvent,
  jobCacheHitEvent,
  jobStartedEvent,
  jobProgressEvent,
  jobCompletedEvent,
  jobFailedEvent,
  jobDeletedEvent,
]);
export type JobEvent = z.infer<typeof jobEventSchema>;

export const janitorRemovedEvent = z.object({
  ...base,
  type: z.literal('removed'),
  job_id: z.string(),
  kind: z.enum(JOB_KINDS).nullable(),
  key: z.string().nullable(),
  files: z.array(z.string()),
  bytes_freed: z.number().int().min(0),
  reason: z.enum(['expired', 'orphan']),
});
export type JanitorRemovedEvent = z.infer<typeof janitorRemovedEvent>;

/** The orphan pass's progress, as a sweep reports it. */
export const janitorOrphanProgress = z.object({
  /** Files this sweep looked at. */
  scanned: z.number().int().min(0),
  /** Files looked at since the current pass began (0 when this sweep completed one). */
  position: z.number().int().min(0),
  /** Files the last complete pass looked at; null until one completed. */
  total_estimate: z.number().int().min(0).nullable(),
  /** position / total_estimate (at most 1), 1 when this sweep completed a pass, null without an estimate. */
  progress: z.number().min(0).max(1).nullable(),
  /** Passes over every bucket completed so far (the cursor in Redis counts them). */
  complete_passes: z.number().int().min(0),
  /** True when this sweep completed a pass. */
  pass_completed: z.boolean(),
  /** The bucket the next sweep resumes in. */
  bucket: z.enum(['downloads', 'normalized', 'uploads']),
  /** When the current pass began (after a completed one: when the next will). */
  pass_started_at: z.iso.datetime(),
});
export type JanitorOrphanProgress = z.infer<typeof janitorOrphanProgress>;

/** How far the orphan pass has come, as the janitor's log line and `npm run events` end: `; orphan scan: 12,000 files, pass 4 at 37% (370,000 of ~1,000,000)`, or `..., pass 4 complete`. */
export function orphanScanLine(orphans: JanitorOrphanProgress | undefined): string {
  if (!orphans) return '';
  const n = (x: number) => x.toLocaleString('en');
  const scanned = `${n(orphans.scanned)} file${orphans.scanned === 1 ? '' : 's'}`;
  if (orphans.pass_completed) return `; orphan scan: ${scanned}, pass ${orphans.complete_passes} complete`;
  const pass = orphans.complete_passes + 1;
  const at =
    orphans.progress === null || orphans.total_estimate === null
      ? `${n(orphans.position)} files`
      : `${Math.floor(orphans.progress * 100)}% (${n(orphans.position)} of ~${n(orphans.total_estimate)})`;
  return `; orphan scan: ${scanned}, pass ${pass} at ${at}`;
}

export const janitorSweepEvent = z.object({
  ...base,
  type: z.literal('sweep'),
  trigger: z.enum(['interval', 'admin', 'startup']),
  removed: z.object({ download: z.number().int(), normalize: z.number().int(), orphan: z.number().int() }),
  files_removed: z.number().int().min(0),
  bytes_freed: z.number().int().min(0),
  duration_ms: z.number().min(0),
  next_run_at: z.iso.datetime().nullable(),
  /**
   * How far the orphan pass has come: each sweep scans a bounded slice of the buckets and
   * the next one resumes there. Absent from janitors before it (and from a skipped sweep).
   */
  orphans: janitorOrphanProgress.optional(),
});
export type JanitorSweepEvent = z.infer<typeof janitorSweepEvent>;

export const serviceConfigEvent = z.object({
  ...base,
  type: z.literal('config'),
  service: z.string(),
  instance: z.string(),
  config: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])),
});
export type ServiceConfigEvent = z.infer<typeof serviceConfigEvent>;

/** Distributive omit, so each member of a union keeps its own fields. */
export type EventInput<E> = E extends unknown ? Omit<E, 'v' | 'at'> : never;

/** Adds the envelope (`v`, `at`) to an event body. */
export function envelope<E extends { type: string }>(
  body: E,
  at: Date = new Date(),
): E & { v: 1; at: string } {
  return { v: 1, at: at.toISOString(), ...body };
}

/** The body of a job request on `jobs.download` / `jobs.normalize`; the record in Redis holds the request itself. */
export const jobRequestMessage = z.object({
  v: z.literal(1),
  job_id: z.string(),
  kind: z.enum(JOB_KINDS),
  /** The record generation this message was published for; a message for an older one is dropped. */
  created_at: z.iso.datetime(),
});
export type JobRequestMessage = z.infer<typeof jobRequestMessage>;
