import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EVENTS_STREAM,
  JANITOR_SUBJECTS,
  connectNats,
  ensureJetStream,
  envelope,
  janitorRemovedEvent,
  janitorSweepEvent,
  jobEventSchema,
  jobEventSubject,
  serviceConfigEvent,
  serviceConfigSubject,
  type NatsConnection,
} from '@media-jobs/libs';
import { REPO_ROOT, startPlatform, waitUntil, type Platform } from '@media-jobs/libs/testing';
import { formatEvent } from '../../scripts/event-format.js';

let platform: Platform;
let nc: NatsConnection;

beforeAll(async () => {
  platform = await startPlatform();
  nc = await connectNats(platform.config(), 'events-cli-test');
});
afterAll(async () => {
  await nc?.close();
  await platform?.close();
});

const AT = new Date('2026-03-04T17:02:11.204Z');

/** Real events, each checked against its zod schema, with the subject a service publishes it on. */
const progress = envelope(
  {
    type: 'progress' as const,
    job_id: 'dQw4w9WgXcQ_720p',
    kind: 'download' as const,
    progress: 42,
    stage: 'downloading',
  },
  AT,
);
const removed = envelope(
  {
    type: 'removed' as const,
    job_id: 'dQw4w9WgXcQ_720p',
    kind: 'download' as const,
    key: 'job:dQw4w9WgXcQ_720p',
    files: ['downloads/dQw4w9WgXcQ_720p.mp4'],
    bytes_freed: 1536,
    reason: 'expired' as const,
  },
  new Date('2026-03-04T17:30:00.011Z'),
);
const sweep = envelope(
  {
    type: 'sweep' as const,
    trigger: 'interval' as const,
    removed: { download: 3, normalize: 9, orphan: 0 },
    files_removed: 15,
    bytes_freed: 1288490189,
    duration_ms: 85,
    next_run_at: '2026-03-04T18:00:00.000Z',
    orphans: {
      scanned: 48000,
      position: 370000,
      total_estimate: 1000000,
      progress: 0.37,
      complete_passes: 3,
      pass_completed: false,
      bucket: 'downloads' as const,
      pass_started_at: '2026-03-04T17:00:00.000Z',
    },
  },
  new Date('2026-03-04T17:30:00.017Z'),
);
const EVENTS: [string, unknown][] = [
  [jobEventSubject('download', 'dQw4w9WgXcQ_720p', 'progress'), jobEventSchema.parse(progress)],
  [JANITOR_SUBJECTS.removed, janitorRemovedEvent.parse(removed)],
  [JANITOR_SUBJECTS.sweep, janitorSweepEvent.parse(sweep)],
];
const LINES = [
  '17:02:11.204  job.download   dQw4w9WgXcQ_720p  progress 42% downloading',
  '17:30:00.011  janitor        removed dQw4w9WgXcQ_720p (expired, download): downloads/dQw4w9WgXcQ_720p.mp4, 1.5 KB',
  '17:30:00.017  janitor        sweep (interval): removed 3 download, 9 normalize, 0 orphan; freed 1.2 GB in 85 ms; next 2026-03-04T18:00:00.000Z; orphan scan: 48,000 files, pass 4 at 37% (370,000 of ~1,000,000)',
];

/** `npm run events` as package.json runs it, against the test's nats-server. */
function runEventsCli(args: string[] = []) {
  const child = spawn(
    process.execPath,
    ['--conditions=media-jobs-source', '--import', 'tsx', 'scripts/events.ts', ...args],
    {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...platform.env() },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    /** Complete lines printed so far. */
    lines: () => out.split('\n').slice(0, -1),
    output: () => out + err,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      return exited;
    },
  };
}

async function publishAll(): Promise<void> {
  for (const [subject, payload] of EVENTS) nc.publish(subject, JSON.stringify(payload));
  await nc.flush();
}

describe('npm run events', () => {
  it('when a job event and janitor events are published, then it prints one readable line per event', async () => {
    const cli = runEventsCli();
    try {
      await waitUntil('the first line of the events CLI', () => cli.lines().length > 0).catch(() => {
        throw new Error(`no output: ${cli.output()}`);
      });
      expect(cli.lines()).toEqual([`Listening on events.> at ${platform.nats.url} (Ctrl-C to stop)`]);
      await publishAll();
      nc.publish(JANITOR_SUBJECTS.sweep, 'not json');
      // The CLI prints in the order NATS delivers, which is the order published: once this
      // last one's line is out, a second line for any event before it would be out too.
      nc.publish(JANITOR_SUBJECTS.sweep, 'end');
      await nc.flush();
      await waitUntil('the line of the last event', () => cli.lines().some((l) => l.endsWith('"end"'))).catch(
        () => {
          throw new Error(`no line for the last event: ${cli.output()}`);
        },
      );
      const lines = cli.lines().slice(1);
      expect(lines.slice(0, 3)).toEqual(LINES);
      expect(lines[3]).toMatch(
        /^\d\d:\d\d:\d\d\.\d{3} {2}events\.janitor\.sweep {2}\(unrecognised\) "not json"$/,
      );
      // Exactly one line per event.
      expect(lines).toHaveLength(5);
      expect(await cli.stop()).toBe(0);
    } finally {
      await cli.stop();
    }
  });

  it('when started with --replay, then it prints what the EVENTS stream holds before the live events', async () => {
    const jsm = await ensureJetStream(nc, platform.config());
    await jsm.streams.purge(EVENTS_STREAM);
    await publishAll();
    await waitUntil(
      'the EVENTS stream to hold the events',
      async () => (await jsm.streams.info(EVENTS_STREAM)).state.messages === EVENTS.length,
    );
    const cli = runEventsCli(['--replay']);
    try {
      await waitUntil('the replayed lines', () => cli.lines().length >= 5).catch(() => {
        throw new Error(`no replay: ${cli.output()}`);
      });
      expect(cli.lines().slice(1)).toEqual([...LINES, '-- replayed 3 stored event(s); live from here --']);
      const [subject, payload] = EVENTS[0] as [string, unknown];
      nc.publish(subject, JSON.stringify(payload));
      await waitUntil('the line of the live event', () => cli.lines().length >= 6);
      expect(cli.lines()[5]).toBe(LINES[0]);
      expect(await cli.stop()).toBe(0);
    } finally {
      await cli.stop();
    }
  });

  it('when a service announces its config or a payload does not fit its subject, then the line says so', () => {
    const config = serviceConfigEvent.parse(
      envelope(
        {
          type: 'config' as const,
          service: 'gateway',
          instance: 'host:41',
          config: { CACHE_TTL_HOURS: 24, CLEANUP_INTERVAL_MINUTES: 30 },
        },
        AT,
      ),
    );
    expect(formatEvent(serviceConfigSubject('gateway'), config)).toBe(
      '17:02:11.204  gateway        config (host:41): TTL 24h, cleanup 30min',
    );
    expect(formatEvent(JANITOR_SUBJECTS.removed, { ...removed, bytes_freed: -1 })).toMatch(
      /^\d\d:\d\d:\d\d\.\d{3} {2}events\.janitor\.removed {2}\(unrecognised\) \{"v":1,/,
    );
  });
});
