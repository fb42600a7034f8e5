/**
 * One readable line per event, for `npm run events` (scripts/events.ts): each payload is
 * parsed with the zod schema of its subject, as any subscriber of `events.>` would.
 */
import type { z } from 'zod';
import {
  jobEventSchema,
  janitorRemovedEvent,
  janitorSweepEvent,
  orphanScanLine,
  serviceConfigEvent,
  type JobEvent,
} from '@media-jobs/libs';

const SCHEMAS: [RegExp, z.ZodType][] = [
  [/^events\.job\./, jobEventSchema],
  [/^events\.janitor\.removed$/, janitorRemovedEvent],
  [/^events\.janitor\.sweep$/, janitorSweepEvent],
  [/^events\.service\.[^.]+\.config$/, serviceConfigEvent],
];

function mb(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  for (; value >= 1024 && unit < units.length - 1; unit++) value /= 1024;
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function describeJob(e: JobEvent): string {
  switch (e.type) {
    case 'queued':
      if (e.reason === 'retry')
        return `queued again after attempt ${e.attempt}: ${e.error?.message ?? 'failed'}; retry in ${e.retry_in_ms} ms`;
      if (e.reason === 'handed_back') return 'queued again: handed back by a stopping worker';
      if (e.reason === 'recovered') return 'queued again: its request was lost, the reconciler sent it anew';
      return `queued, expires ${e.expires_at}`;
    case 'cache_hit':
      return `cache hit (${e.status})`;
    case 'started':
      return `started, attempt ${e.attempt}`;
    case 'progress':
      return `progress ${e.progress}%${e.stage ? ` ${e.stage}` : ''}`;
    case 'completed':
      return `completed in ${(e.duration_ms / 1000).toFixed(1)} s ${JSON.stringify(e.result)}`;
    case 'failed':
      return `failed after ${e.attempts} attempt(s): ${e.error.code} ${e.error.message}`;
    case 'deleted':
      return `deleted, ${e.files.length} file(s), ${mb(e.bytes_freed)} freed`;
  }
}

/** One line for one event: time, source, subject of the event, what happened. */
export function formatEvent(subject: string, payload: unknown): string {
  const schema = SCHEMAS.find(([re]) => re.test(subject))?.[1];
  const parsed = schema?.safeParse(payload);
  if (!parsed?.success)
    return `${new Date().toISOString().slice(11, 23)}  ${subject}  (unrecognised) ${JSON.stringify(payload)}`;
  const e = parsed.data as { at: string; type: string } & Record<string, unknown>;
  const time = e.at.slice(11, 23);
  if (subject.startsWith('events.job.')) {
    const job = e as unknown as JobEvent;
    return `${time}  job.${job.kind.padEnd(9)}  ${job.job_id}  ${describeJob(job)}`;
  }
  if (e.type === 'removed') {
    const r = e as unknown as z.infer<typeof janitorRemovedEvent>;
    return `${time}  janitor        removed ${r.job_id} (${r.reason}${r.kind ? `, ${r.kind}` : ''}): ${r.files.join(', ') || 'no files'}, ${mb(r.bytes_freed)}`;
  }
  if (e.type === 'sweep') {
    const s = e as unknown as z.infer<typeof janitorSweepEvent>;
    const { download, normalize, orphan } = s.removed;
    return `${time}  janitor        sweep (${s.trigger}): removed ${download} download, ${normalize} normalize, ${orphan} orphan; freed ${mb(s.bytes_freed)} in ${Math.round(s.duration_ms)} ms; next ${s.next_run_at ?? '-'}${orphanScanLine(s.orphans)}`;
  }
  const c = e as unknown as z.infer<typeof serviceConfigEvent>;
  return `${time}  ${c.service.padEnd(13)}  config (${c.instance}): TTL ${c.config.CACHE_TTL_HOURS}h, cleanup ${c.config.CLEANUP_INTERVAL_MINUTES}min`;
}
