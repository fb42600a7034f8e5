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

/** Each service announces its effective configuration here at start and periodically. */
export function serviceConfigSubject(service: string): string {
  return `events.service.${service}.config`;
}
