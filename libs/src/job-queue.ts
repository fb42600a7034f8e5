import { jetstream, jetstreamManager, type JetStreamClient, type MsgRequest } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { unavailable } from './errors.js';
import { jobRequestMessage, type JobRequestMessage } from './events.js';
import type { JobKind, JobRecord } from './job-record.js';
import { natsConnected } from './nats.js';
import { safeJson } from './job-runner.js';
import { JOBS_STREAM, JOB_SUBJECTS } from './subjects.js';

/**
 * Nats-Msg-Id of a job request: the job id, plus the record generation (its creation time)
 * so that a failed job queued again inside the 2-minute duplicate window is not dropped as a
 * duplicate of its first request. Re-publishing the same generation is deduplicated.
 */
export function jobMessageId(record: Pick<JobRecord, 'id' | 'created_at'>): string {
  return `${record.id}:${Date.parse(record.created_at)}`;
}

/** Publishes job requests to `JOBS`; fails fast with a 503 `AppError` when JetStream does not answer. */
export class JobQueue {
  private readonly js: JetStreamClient;

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs = 3000,
  ) {
    this.js = jetstream(nc, { timeout: timeoutMs });
  }

  /**
   * Queues the job's request. `resend` marks a request sent again for the same generation
   * (the reconciler's, after the first was lost): it gets its own message id, so the
   * duplicate window cannot drop it.
   */
  async enqueue(record: JobRecord, options: { resend?: boolean } = {}): Promise<void> {
    // While the link is down the client would buffer the publish and answer only at the
    // timeout; a user waiting seconds for a 503 is worse than one told at once to retry.
    if (!natsConnected(this.nc)) throw queueUnavailable();
    const message: JobRequestMessage = {
      v: 1,
      job_id: record.id,
      kind: record.kind,
      created_at: record.created_at,
    };
    try {
      await this.js.publish(JOB_SUBJECTS[record.kind], JSON.stringify(message), {
        msgID: options.resend ? `${jobMessageId(record)}:resent:${Date.now()}` : jobMessageId(record),
        timeout: this.timeoutMs,
      });
    } catch (err) {
      throw queueUnavailable(err);
    }
  }
}

const queueUnavailable = (cause?: unknown) =>
  unavailable(
    'queue.unavailable',
    'the job queue (NATS JetStream) is not reachable; try again shortly',
    cause,
  );

/** `<kind>:<id>:<created_at>`: one generation of one job's request. */
export function jobRequestKey(record: Pick<JobRecord, 'kind' | 'id' | 'created_at'>): string {
  return `${record.kind}:${record.id}:${record.created_at}`;
}

/**
 * Every request still in `JOBS` for these kinds (waiting, or delivered and not yet acked:
 * WorkQueue retention keeps a request until a worker acks it), as `jobRequestKey`s; null when
 * there are more than `limit`. One small request to the server per message.
 */
export async function queuedRequests(
  nc: NatsConnection,
  kinds: Iterable<JobKind>,
  limit: number,
): Promise<Set<string> | null> {
  const jsm = await jetstreamManager(nc);
  const found = new Set<string>();
  let read = 0;
  for (const kind of new Set(kinds)) {
    for (let seq = 1; ;) {
      // The server (2.9+) takes `next_by_subj` on the plain message API; the client types
      // offer it for direct gets only, which JOBS does not allow.
      const query = { seq, next_by_subj: JOB_SUBJECTS[kind] } as unknown as MsgRequest;
      const msg = await jsm.streams.getMessage(JOBS_STREAM, query);
      if (!msg) break;
      if (++read > limit) return null;
      const request = jobRequestMessage.safeParse(safeJson(msg.data));
      if (request.success) {
        found.add(jobRequestKey({ ...request.data, id: request.data.job_id }));
      }
      seq = msg.seq + 1;
    }
  }
  return found;
}
