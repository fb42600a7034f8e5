import type { NatsConnection } from '@nats-io/transport-node';
import type { JobKind } from '../job-record.js';
import { queuedRequests } from '../job-queue.js';
import { waitUntil, type WaitOptions } from './wait.js';

/**
 * Resolves once `JOBS` holds no request of this job: every delivery of it was acked or
 * terminated (WorkQueue retention drops the message then), so JetStream will never deliver
 * it again. This is the positive signal an absence check waits for ("no second run"): no
 * later run can start once it holds, however slow the machine.
 */
export async function waitUntilRequestGone(
  nc: NatsConnection,
  kind: JobKind,
  id: string,
  options: WaitOptions = {},
): Promise<void> {
  await waitUntil(
    `JOBS to hold no request of ${kind} job ${id}`,
    async () => {
      const queued = await queuedRequests(nc, [kind], 10_000);
      if (!queued) return ['(too many requests in JOBS to look through)'];
      return [...queued].filter((key) => key.startsWith(`${kind}:${id}:`));
    },
    { ...options, until: (left: string[]) => left.length === 0 },
  );
}

export interface SettleOptions extends WaitOptions {
  /** Whatever may run the job (workers, runners): each must be idle, so a delivery that came earlier has ended too. */
  runners?: readonly { readonly active: number }[];
  /** The runners' connections: what they published must have reached the server. */
  publishers?: readonly NatsConnection[];
}

/**
 * Resolves once no run of the job can still start or be under way: its request is gone from
 * `JOBS` (`waitUntilRequestGone`) and every runner is idle. Everything the runners published
 * has then arrived at `nc`'s subscriptions too, so a test can count runs and events.
 */
export async function waitUntilJobSettled(
  nc: NatsConnection,
  kind: JobKind,
  id: string,
  options: SettleOptions = {},
): Promise<void> {
  const { runners = [], publishers = [], ...wait } = options;
  await waitUntilRequestGone(nc, kind, id, wait);
  await waitUntil(
    `every runner of ${kind} job ${id} to be idle`,
    () => runners.every((r) => r.active === 0),
    wait,
  );
  for (const publisher of publishers) await publisher.flush();
  // The server forwards in order: after this round trip, what it had for `nc` has arrived.
  await nc.flush();
}
