/**
 * `npm run events`: prints every event on `events.>` live, one readable line each, e.g.
 *
 *   17:02:11.204  job.download  dQw4w9WgXcQ_720p  progress 42% downloading
 *   17:30:00.017  janitor       sweep             removed 3 download, 9 normalize, 0 orphan; freed 1.2 GB in 85 ms
 *
 * `npm run events -- --replay` first replays what the EVENTS stream still holds (up to
 * CACHE_TTL_HOURS back). Also the example of a NATS subscriber: a plain core subscription,
 * each payload parsed with the zod schemas exported by `@media-jobs/libs`.
 */
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import type { z } from 'zod';
import {
  EVENTS_ALL,
  EVENTS_STREAM,
  connectNats,
  jobEventSchema,
  janitorRemovedEvent,
  janitorSweepEvent,
  loadConfigOrExit,
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
    return `${time}  janitor        sweep (${s.trigger}): removed ${download} download, ${normalize} normalize, ${orphan} orphan; freed ${mb(s.bytes_freed)} in ${Math.round(s.duration_ms)} ms; next ${s.next_run_at ?? '-'}`;
  }
  const c = e as unknown as z.infer<typeof serviceConfigEvent>;
  return `${time}  ${c.service.padEnd(13)}  config (${c.instance}): TTL ${c.config.CACHE_TTL_HOURS}h, cleanup ${c.config.CLEANUP_INTERVAL_MINUTES}min`;
}

function decode(data: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    return new TextDecoder().decode(data);
  }
}

async function replay(nc: Awaited<ReturnType<typeof connectNats>>): Promise<void> {
  const consumer = await jetstream(nc).consumers.get(EVENTS_STREAM, { deliver_policy: DeliverPolicy.All });
  const pending = (await consumer.info()).num_pending;
  if (pending === 0) return;
  const messages = await consumer.consume();
  let seen = 0;
  for await (const m of messages) {
    console.log(formatEvent(m.subject, decode(m.data)));
    if (++seen >= pending) break;
  }
  console.log(`-- replayed ${seen} stored event(s); live from here --`);
}

const config = loadConfigOrExit(process.env);
const nc = await connectNats(config, 'events-cli');
const live = nc.subscribe(EVENTS_ALL);
process.once('SIGINT', () => void nc.drain().finally(() => process.exit(0)));
console.log(`Listening on ${EVENTS_ALL} at ${config.natsUrl} (Ctrl-C to stop)`);
if (process.argv.includes('--replay')) await replay(nc);
for await (const msg of live) console.log(formatEvent(msg.subject, decode(msg.data)));
