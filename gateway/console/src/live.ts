import { jobPath } from './api.js';
import { applyEvent, reloadJob, TERMINAL } from './store.js';
import type { JobStatus } from './api.js';

const EVENT_TYPES = ['state', 'queued', 'cache_hit', 'started', 'progress', 'completed', 'failed', 'deleted'];
const END_EVENTS = new Set(['completed', 'failed', 'deleted']);

export interface LiveEvent {
  type: string;
  data: Record<string, unknown>;
}

export interface Follow {
  close(): void;
}

/**
 * Follows one job's `GET /jobs/:id/events` stream: each event moves the store on and is passed
 * to `onEvent`. Reads need no API key, so EventSource (which cannot send headers) is enough,
 * and it reconnects by itself after a dropped connection (the stream starts again with the
 * current state). The gateway ends the stream when the job ends; the source is closed then,
 * or it would reconnect.
 */
export function follow(
  id: string,
  onEvent?: (event: LiveEvent) => void,
  onEnd?: (reason: 'done' | 'refused') => void,
): Follow {
  const source = new EventSource(`${jobPath(id)}/events`);
  let closed = false;
  const end = (reason: 'done' | 'refused') => {
    if (closed) return;
    closed = true;
    source.close();
    onEnd?.(reason);
  };
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (e) => {
      let data: Record<string, unknown>;
      try {
        data = JSON.parse((e as MessageEvent<string>).data) as Record<string, unknown>;
      } catch {
        return;
      }
      applyEvent(id, type, data);
      onEvent?.({ type, data });
      // The final record (its new expiry, its result) comes from the record itself.
      if (type === 'completed' || type === 'failed') void reloadJob(id);
      const done = type === 'state' ? TERMINAL.has(data['status'] as JobStatus) : END_EVENTS.has(type);
      if (done) end('done');
    });
  }
  source.addEventListener('error', () => {
    // CLOSED: the gateway refused the stream (the job is gone); CONNECTING: it retries by itself.
    if (source.readyState === EventSource.CLOSED) {
      void reloadJob(id);
      end('refused');
    }
  });
  return {
    close() {
      closed = true;
      source.close();
    },
  };
}
