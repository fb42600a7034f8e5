import type { JobKind } from './job-record.js';

/** Stream, subject and consumer names: the NATS contract of DESIGN.md, defined once. */
export const JOBS_STREAM = 'JOBS';
export const EVENTS_STREAM = 'EVENTS';

export const JOB_SUBJECTS = {
  download: 'jobs.download',
  normalize: 'jobs.normalize',
} as const satisfies Record<JobKind, string>;

export const CONSUMERS = {
  download: 'download-worker',
  normalize: 'normalize-worker',
} as const satisfies Record<JobKind, string>;

export const JOB_EVENT_TYPES = [
  'queued',
  'cache_hit',
  'started',
  'progress',
  'completed',
  'failed',
  'deleted',
] as const;
export type JobEventType = (typeof JOB_EVENT_TYPES)[number];

export const EVENTS_ALL = 'events.>';

export function jobEventSubject(kind: JobKind, id: string, type: JobEventType): string {
  return `events.job.${kind}.${id}.${type}`;
}

/** Every event of one job: `events.job.<kind>.<id>.*`. */
export function jobEventsFilter(kind: JobKind, id: string): string {
  return `events.job.${kind}.${id}.*`;
}

export const JANITOR_SUBJECTS = {
  removed: 'events.janitor.removed',
  sweep: 'events.janitor.sweep',
  /** Request/reply: the gateway asks the janitor to sweep now (`POST /admin/cleanup`). */
  cleanupRequest: 'janitor.cleanup',
} as const;

/**
 * Webhooks: two durable consumers of `EVENTS` (one per terminal event type: nats-server 2.9
 * has one filter per consumer) turn each job's `completed`/`failed` event into one delivery
 * per receiver on the `WEBHOOKS` work queue, whose own consumer sends them, each retried on
 * its own schedule.
 */
export const WEBHOOKS_STREAM = 'WEBHOOKS';
export const WEBHOOK_DELIVERY_SUBJECT = 'webhooks.deliver';
export const WEBHOOK_EVENT_TYPES = ['completed', 'failed'] as const satisfies readonly JobEventType[];
export const WEBHOOK_CONSUMERS = {
  completed: 'webhooks-completed',
  failed: 'webhooks-failed',
  deliver: 'webhooks-deliver',
} as const;

/** Every job's events of one type: `events.job.*.*.<type>`. */
export function jobEventTypeFilter(type: JobEventType): string {
  return `events.job.*.*.${type}`;
}

/** Each service announces its effective configuration here at start and periodically. */
export function serviceConfigSubject(service: string): string {
  return `events.service.${service}.config`;
}
