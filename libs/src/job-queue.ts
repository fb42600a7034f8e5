import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { unavailable } from './errors.js';
import type { JobRequestMessage } from './events.js';
import type { JobRecord } from './job-record.js';
import { natsConnected } from './nats.js';
import { JOB_SUBJECTS } from './subjects.js';

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

  async enqueue(record: JobRecord): Promise<void> {
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
        msgID: jobMessageId(record),
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
