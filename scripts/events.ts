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
import { EVENTS_ALL, EVENTS_STREAM, connectNats, loadConfigOrExit } from '@media-jobs/libs';
import { formatEvent } from './event-format.js';

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

async function main(): Promise<void> {
  const config = loadConfigOrExit(process.env);
  const nc = await connectNats(config, 'events-cli');
  const live = nc.subscribe(EVENTS_ALL);
  // The server has the subscription before the line says so: whatever is published after it is printed.
  await nc.flush();
  process.once('SIGINT', () => void nc.drain().finally(() => process.exit(0)));
  console.log(`Listening on ${EVENTS_ALL} at ${config.natsUrl} (Ctrl-C to stop)`);
  if (process.argv.includes('--replay')) await replay(nc);
  for await (const msg of live) console.log(formatEvent(msg.subject, decode(msg.data)));
}

await main();
