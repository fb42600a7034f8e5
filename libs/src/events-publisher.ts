import type { NatsConnection } from '@nats-io/transport-node';
import { envelope, type EventInput, type JobEvent } from './events.js';
import type { JobKind } from './job-record.js';
import { jobEventSubject, type JobEventType } from './subjects.js';

/** The body of one job event, without the envelope and the job's identity. */
export type JobEventBody<T extends JobEventType> = Omit<
  Extract<EventInput<JobEvent>, { type: T }>,
  'type' | 'job_id' | 'kind'
>;

/**
 * Publishes events with core NATS: subscribers of `events.>` see them live, and the `EVENTS`
 * stream stores them for replay. Publishing never throws into job processing: while NATS is
 * away the client buffers and flushes on reconnect.
 */
export class EventPublisher {
  constructor(private readonly nc: NatsConnection) {}

  job<T extends JobEventType>(kind: JobKind, id: string, type: T, body: JobEventBody<T>): void {
    this.publish(jobEventSubject(kind, id, type), { type, job_id: id, kind, ...body });
  }

  publish(subject: string, body: { type: string } & Record<string, unknown>): void {
    try {
      this.nc.publish(subject, JSON.stringify(envelope(body)));
    } catch {
      // Closed connection during shutdown: the event is lost, the job record is the truth.
    }
  }
}
