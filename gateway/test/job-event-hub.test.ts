import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { freePort, managed, waitUntil, type TestServer } from '@media-jobs/libs/testing';
import { createJobEventHub, type HubEvent } from '../src/job-event-hub.js';

// The SSE fan-out: every watcher of a job gets its events, all of them through one NATS
// subscription per job, and the subscription goes when the last watcher leaves. The count
// of subscriptions is read from nats-server's own monitoring endpoint.

let nats: TestServer;
let monitor: number;
let nc: NatsConnection;

beforeAll(async () => {
  const [port, m] = [await freePort(), await freePort()];
  monitor = m;
  const dir = await mkdtemp(join(tmpdir(), 'mj-hub-'));
  nats = managed('nats', port, dir, 'nats-server', ['-a', '127.0.0.1', '-p', String(port), '-m', String(m)]);
  await nats.start();
  nc = await connect({ servers: nats.url });
});

afterAll(async () => {
  await nc?.close();
  await nats?.close();
});

async function serverSubscriptions(): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${monitor}/subsz`);
  return ((await res.json()) as { num_subscriptions: number }).num_subscriptions;
}

describe('job event hub', () => {
  it("when 200 watchers watch two jobs, then each gets its job's events framed once, over two subscriptions, and none are left after they leave", async () => {
    await nc.flush();
    const baseline = await serverSubscriptions();
    const hub = createJobEventHub(nc);
    const got = new Map<number, HubEvent[]>();
    const stops: (() => void)[] = [];
    for (let i = 0; i < 200; i++) {
      got.set(i, []);
      stops.push(hub.watch(i % 2 === 0 ? 'job-a' : 'job-b', (e) => got.get(i)!.push(e)));
    }
    expect(hub.watchedJobs).toBe(2);
    await nc.flush();
    await waitUntil(
      'nats-server to hold the two subscriptions',
      async () => (await serverSubscriptions()) === baseline + 2,
    );

    nc.publish('events.job.download.job-a.progress', '{"percent":50}');
    nc.publish('events.job.normalize.job-b.completed', '{"ok":true}');
    nc.publish('events.job.download.job-c.progress', '{"percent":1}');
    await waitUntil('every watcher to get its event', () =>
      [...got.values()].every((events) => events.length === 1),
    );
    for (const [i, events] of got) {
      const [event] = events;
      if (i % 2 === 0)
        expect(event).toEqual({
          type: 'progress',
          data: '{"percent":50}',
          frame: 'event: progress\ndata: {"percent":50}\n\n',
        });
      else
        expect(event).toEqual({
          type: 'completed',
          data: '{"ok":true}',
          frame: 'event: completed\ndata: {"ok":true}\n\n',
        });
    }
    // One decoded event for all 100 watchers of a job, not a copy each.
    expect(new Set([...got.entries()].filter(([i]) => i % 2 === 0).map(([, e]) => e[0])).size).toBe(1);

    for (const stop of stops.slice(0, 199)) stop();
    stops[0]!(); // a second call does nothing
    expect(hub.watchedJobs).toBe(1);
    stops[199]!();
    expect(hub.watchedJobs).toBe(0);
    await nc.flush();
    await waitUntil(
      'nats-server to drop both subscriptions',
      async () => (await serverSubscriptions()) === baseline,
    );
  });

  it('when a watcher leaves while an event is handed out, then the others still get it, and a new watcher gets the next one', async () => {
    const hub = createJobEventHub(nc);
    const seen: string[] = [];
    const stopFirst = hub.watch('job-d', (e) => {
      seen.push(`first ${e.type}`);
      stopFirst();
    });
    hub.watch('job-d', (e) => seen.push(`second ${e.type}`));
    await nc.flush();
    nc.publish('events.job.download.job-d.started', '{}');
    await waitUntil('both to see started', () => seen.length === 2);
    hub.watch('job-d', (e) => seen.push(`third ${e.type}`));
    nc.publish('events.job.download.job-d.completed', '{}');
    await waitUntil('the remaining two to see completed', () => seen.length === 4);
    expect(seen).toEqual(['first started', 'second started', 'second completed', 'third completed']);
  });
});
