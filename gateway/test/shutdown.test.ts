import { request, type ClientRequest } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  getJob,
  NO_RATE_LIMITS,
  makeMp4,
  postDownload,
  makeTone,
  spawnService,
  startFixtureServer,
  startPlatform,
  waitForJobs,
  type FixtureServer,
  type Platform,
  type ServiceProcess,
} from '@media-jobs/libs/testing';
import { startGateway, type Gateway } from '../src/gateway.js';

let platform: Platform;
let fixtures: FixtureServer;
let gateway: Gateway;
const live: ServiceProcess[] = [];

// Generous: a throttled download plus yt-dlp start-up on a busy 2-core machine fits well inside.
const GRACE_SECONDS = 15;

beforeAll(async () => {
  platform = await startPlatform();
  fixtures = await startFixtureServer();
  fixtures.mount('mp4', join(await makeMp4({ width: 320, height: 180, seconds: 2 }), '..'));
  // An in-process gateway to submit jobs while the service under test runs as its own process.
  gateway = await startGateway(platform.config(NO_RATE_LIMITS));
}, 120_000);

afterAll(async () => {
  await Promise.all(live.map((p) => p.stop('SIGKILL')));
  await gateway?.stop();
  await fixtures?.close();
  await platform?.close();
});

function spawn(service: string, overrides: Record<string, string> = {}): ServiceProcess {
  const proc = spawnService(
    service,
    platform.env({ LOG_LEVEL: 'info', SHUTDOWN_GRACE_SECONDS: String(GRACE_SECONDS), ...overrides }),
  );
  live.push(proc);
  return proc;
}

const startedLine = (id: string) => new RegExp(`"job_id":"${id}".*"msg":"Job started"`);

/** SIGTERM, then the exit code and how long the process took to exit. */
async function terminate(proc: ServiceProcess): Promise<{ code: number | null; ms: number }> {
  const started = Date.now();
  const code = await proc.stop('SIGTERM');
  return { code, ms: Date.now() - started };
}

describe('SIGTERM', () => {
  it('when the gateway gets SIGTERM during a request, then it stops accepting, finishes that request and exits 0', async () => {
    const proc = spawn('gateway');
    const port = /"port":(\d+)/.exec(await proc.waitFor(/Gateway listening/))?.[1];
    const body = JSON.stringify({ url: `${fixtures.origin}/mp4/video.mp4?gateway-term`, quality: 'best' });
    // A request whose body is still arriving when the signal comes. `Expect: 100-continue`
    // makes the server say when it has the request in hand (it answers 100 before reading
    // the body); the rest of the body goes only once the gateway is shutting down.
    let req!: ClientRequest;
    const answer = new Promise<{ status: number; text: string }>((resolve, reject) => {
      req = request(
        {
          host: '127.0.0.1',
          port,
          path: '/download',
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            expect: '100-continue',
            connection: 'close',
          },
        },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.on('error', reject);
    });
    const dispatched = new Promise<void>((resolve) =>
      req.once('continue', () => {
        req.write(body.slice(0, 10));
        resolve();
      }),
    );
    req.flushHeaders();
    await Promise.race([
      dispatched,
      answer.then(({ status }) => {
        throw new Error(`answered ${status} before the body was sent`);
      }),
    ]);
    const exited = terminate(proc);
    await proc.waitFor(/Shutting down/);
    // Intake stopped: a new connection is refused while the open request is still served.
    await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
    req.end(body.slice(10));
    expect((await answer).status).toBe(202);
    const { code, ms } = await exited;
    expect(code).toBe(0);
    expect(ms).toBeLessThan(GRACE_SECONDS * 1000);
  });

  it('when a download worker gets SIGTERM mid-job, then it takes no new job, finishes the running one within the grace period and exits 0', async () => {
    const proc = spawn('download-worker', { DOWNLOAD_CONCURRENCY: '1' });
    await proc.waitFor(/Download worker ready/);
    // About 3 s: well inside the grace period.
    fixtures.throttle(60_000);
    const first = await postDownload(gateway.url, `${fixtures.origin}/mp4/video.mp4?worker-term=1`);
    await proc.waitFor(startedLine(first.id!), 60_000);
    const { code, ms } = await terminate(proc);
    const second = await postDownload(gateway.url, `${fixtures.origin}/mp4/video.mp4?worker-term=2`);
    fixtures.throttle(0);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(GRACE_SECONDS * 1000);
    expect(await getJob(gateway.url, first.id!)).toMatchObject({ status: 'completed', attempts: 1 });
    expect(await getJob(gateway.url, second.id!)).toMatchObject({ status: 'queued' });

    // The job it did not take is there for the next worker.
    const next = spawn('download-worker');
    const done = await waitForJobs(gateway.url, [second.id!], 30_000);
    expect(done.get(second.id!)).toMatchObject({ status: 'completed' });
    expect((await terminate(next)).code).toBe(0);
  });

  it('when a normalize worker gets SIGTERM mid-job, then the job is finished or handed back, never left processing, and it exits 0', async () => {
    const path = join(platform.dataDir, 'long.mp3');
    await makeTone(path, { hz: 330, seconds: 60, sampleRate: 44100 });
    const proc = spawn('normalize-worker', { SHUTDOWN_GRACE_SECONDS: '1' });
    await proc.waitFor(/Normalize worker ready/);
    const form = new FormData();
    form.append('operations[]', 'normalize_volume');
    form.append('operations[]', 'remove_noise');
    form.append('file', new Blob([new Uint8Array(await readFile(path))], { type: 'audio/mpeg' }), 'long.mp3');
    const res = await fetch(`${gateway.url}/normalize`, { method: 'POST', body: form });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    await proc.waitFor(startedLine(id));
    const { code, ms } = await terminate(proc);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(1000 + 5000);
    expect((await getJob(gateway.url, id))?.status).toMatch(/^(completed|queued)$/);

    const next = spawn('normalize-worker');
    const done = await waitForJobs(gateway.url, [id], 60_000);
    expect(done.get(id)).toMatchObject({ status: 'completed' });
    expect((await terminate(next)).code).toBe(0);
  });

  it('when the janitor gets SIGTERM, then it stops its timer and subscriptions and exits 0', async () => {
    const proc = spawn('janitor');
    await proc.waitFor(/Janitor started/);
    const { code, ms } = await terminate(proc);
    expect(code, `signal ${proc.child.signalCode}; output:\n${proc.output().slice(-2000)}`).toBe(0);
    expect(ms).toBeLessThan(GRACE_SECONDS * 1000);
    expect(proc.output()).toMatch(/"msg":"Stopped"/);
  });
});
