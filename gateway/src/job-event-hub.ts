import type { NatsConnection, Subscription } from '@nats-io/transport-node';

/** One event of a job as its SSE watchers get it; `frame` is the SSE text, built once for all of them. */
export interface HubEvent {
  type: string;
  data: string;
  frame: string;
}

export type HubListener = (event: HubEvent) => void;

export interface JobEventHub {
  /**
   * Calls `listener` with every event of job `id` (either kind) from now on; the returned
   * function stops it. The first watcher of a job subscribes, the last one to leave unsubscribes.
   */
  watch(id: string, listener: HubListener): () => void;
  /** Jobs watched now (one NATS subscription each). */
  readonly watchedJobs: number;
}

/**
 * The fan-out of live job events to SSE watchers: one NATS subscription per watched job,
 * however many browsers watch it, and each event decoded and framed once. With a
 * subscription per watcher, nats-server sent every event once per watcher, and the gateway
 * decoded each copy.
 */
export function createJobEventHub(nc: NatsConnection): JobEventHub {
  const jobs = new Map<string, { sub: Subscription; listeners: Set<HubListener> }>();
  return {
    watch(id, listener) {
      let job = jobs.get(id);
      if (!job) {
        const listeners = new Set<HubListener>();
        const sub = nc.subscribe(`events.job.*.${id}.*`, {
          callback: (err, msg) => {
            if (err) return;
            const type = msg.subject.slice(msg.subject.lastIndexOf('.') + 1);
            const data = msg.string();
            const event: HubEvent = { type, data, frame: `event: ${type}\ndata: ${data}\n\n` };
            // A listener may leave (or a new one join) while this runs: go over a copy.
            for (const l of [...listeners]) l(event);
          },
        });
        job = { sub, listeners };
        jobs.set(id, job);
      }
      const entry = job;
      entry.listeners.add(listener);
      let stopped = false;
      return () => {
        if (stopped) return;
        stopped = true;
        entry.listeners.delete(listener);
        if (entry.listeners.size === 0 && jobs.get(id) === entry) {
          jobs.delete(id);
          entry.sub.unsubscribe();
        }
      };
    },
    get watchedJobs() {
      return jobs.size;
    },
  };
}
