import { call, jobPath, ApiError, type Job, type JobError, type JobStatus } from './api.js';

/** A job as the console knows it: the last record, moved on by the live events since. */
export interface LiveJob extends Job {
  /** What the worker is doing now (`downloading`, `normalizing` ...), from progress events. */
  stage?: string;
  /** A retry's reason, from a `queued` event. */
  note?: string;
}

type Listener = (id: string, job: LiveJob | null) => void;

const jobs = new Map<string, LiveJob>();
/** The newest time each job was synced at (record `updated_at` or event `at`): older news is dropped. */
const syncedAt = new Map<string, number>();
const listeners = new Set<Listener>();

export const TERMINAL: ReadonlySet<JobStatus> = new Set(['completed', 'failed']);

export const getJob = (id: string): LiveJob | undefined => jobs.get(id);

export function onJobChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function notify(id: string): void {
  const job = jobs.get(id) ?? null;
  for (const listener of listeners) listener(id, job);
}

/** A record from the gateway; one older than what the events already told is ignored. */
export function putJob(record: Job): void {
  const at = Date.parse(record.updated_at);
  if (at < (syncedAt.get(record.id) ?? -Infinity)) return;
  syncedAt.set(record.id, at);
  const { cache_hit: _hit, ...rest } = record;
  jobs.set(record.id, { ...rest });
  notify(record.id);
}

export function removeJob(id: string): void {
  if (!jobs.delete(id)) return;
  syncedAt.set(id, Infinity);
  notify(id);
}

/** Reads the record again, e.g. after it completed (the expiry is set again at completion). */
export async function reloadJob(id: string): Promise<void> {
  try {
    const { body } = await call<Job>('GET', jobPath(id));
    syncedAt.delete(id);
    putJob(body);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 410)) removeJob(id);
  }
}

type EventData = Record<string, unknown>;

/** Moves a job on by one event of its SSE stream (README "NATS events"). */
export function applyEvent(id: string, type: string, data: EventData): void {
  if (type === 'state') {
    syncedAt.delete(id);
    putJob(data as unknown as Job);
    return;
  }
  if (type === 'deleted') {
    removeJob(id);
    return;
  }
  const job = jobs.get(id);
  if (!job) return;
  const at = typeof data['at'] === 'string' ? Date.parse(data['at']) : Date.now();
  if (at < (syncedAt.get(id) ?? -Infinity)) return;
  syncedAt.set(id, at);
  if (type === 'queued') {
    job.status = 'queued';
    job.progress = 0;
    delete job.stage;
    const error = data['error'] as JobError | undefined;
    if (data['reason'] === 'retry' && error) job.note = `retrying after: ${error.message}`;
    else if (data['reason'] === 'handed_back') job.note = 'handed back by a stopping worker';
  } else if (type === 'started') {
    job.status = 'processing';
  } else if (type === 'progress') {
    job.status = 'processing';
    if (typeof data['progress'] === 'number') job.progress = data['progress'];
    if (typeof data['stage'] === 'string') job.stage = data['stage'];
  } else if (type === 'completed') {
    job.status = 'completed';
    job.progress = 100;
    delete job.stage;
    delete job.note;
    job.result = data['result'] as Record<string, unknown>;
  } else if (type === 'failed') {
    job.status = 'failed';
    delete job.stage;
    job.error = data['error'] as JobError;
  } else return;
  notify(id);
}
