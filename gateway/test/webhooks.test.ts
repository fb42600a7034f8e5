import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { IncomingHttpHeaders } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  AppError,
  jobEventSchema,
  startWorker,
  type JobHandler,
  type JobRecord,
  type Worker,
} from '@media-jobs/libs';
import {
  makeTone,
  spawnService,
  startPlatform,
  startWebhookReceiver,
  waitUntil,
  type Platform,
  type ServiceProcess,
  type WebhookReceiver,
} from '@media-jobs/libs/testing';
import { startGateway, type Gateway } from '../src/gateway.js';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const ENV = {
  WEBHOOK_SECRET: SECRET,
  WEBHOOK_RETRY_BASE_SECONDS: '0.3',
  WEBHOOK_TIMEOUT_SECONDS: '2',
  WEBHOOK_MAX_ATTEMPTS: '4',
};

/**
 * Standard Webhooks verification as the spec describes it, written here apart from the
 * sender's signing code: HMAC-SHA256 keyed by the base64-decoded secret over
 * `<webhook-id>.<webhook-timestamp>.<body>`, compared in constant time with each `v1,`
 * signature of the space-separated header, and a timestamp within 5 minutes.
 */
function verifyStandardWebhook(secret: string, headers: IncomingHttpHeaders, body: string): boolean {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (typeof id !== 'string' || typeof timestamp !== 'string' || typeof signatures !== 'string') return false;
  if (!/^\d+$/.test(timestamp) || Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest();
  return signatures.split(' ').some((s) => {
    const [version, b64] = s.split(',');
    const given = Buffer.from(b64 ?? '', 'base64');
    return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
  });
}

/** A handler that completes at once, fails for good on URLs with `fail`, and waits on `gated` URLs until opened. */
function testHandler(gates: Map<string, () => void>): JobHandler {
  return async (run) => {
    const url = String(run.job.request['url']);
    if (url.includes('fail'))
      throw new AppError('download.unavailable', 'the source is gone', { retryable: false });
    if (url.includes('gated')) await new Promise<void>((resolve) => gates.set(run.job.id, resolve));
    return { result: { file: `${run.job.id}.mp4`, bytes: 1 }, files: [] };
  };
}

async function submit(base: string, url: string, callback?: string) {
  const res = await fetch(`${base}/download`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url, ...(callback === undefined ? {} : { callback_url: callback }) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

async function record(base: string, id: string): Promise<JobRecord> {
  return (await (await fetch(`${base}/jobs/${id}`)).json()) as JobRecord;
}

/** The job's webhook attempts to one URL, once `done` accepts them. */
function attemptsTo(
  base: string,
  id: string,
  url: string,
  done: (a: NonNullable<JobRecord['webhooks']>) => boolean,
) {
  return waitUntil(
    `the webhook attempts of ${id} to ${url}`,
    async () => ((await record(base, id)).webhooks ?? []).filter((a) => a.url === url),
    { until: done },
  );
}

describe('webhooks from an in-process gateway', () => {
  let platform: Platform;
  let gateway: Gateway;
  let worker: Worker;
  let receiver: WebhookReceiver;
  let nc: NatsConnection;
  const gates = new Map<string, () => void>();
  const natsEvents = new Map<string, string>();

  beforeAll(async () => {
    platform = await startPlatform();
    receiver = await startWebhookReceiver();
    // Operator receivers get every job's event, besides each job's own callback_url.
    gateway = await startGateway(platform.config({ ...ENV, WEBHOOK_URLS: `${receiver.origin}/global` }));
    worker = await startWorker({
      service: 'download-worker',
      kind: 'download',
      config: platform.config(ENV),
      handler: () => testHandler(gates),
      concurrency: 4,
      timeoutMs: 30_000,
    });
    nc = await connect({ servers: platform.nats.url });
    nc.subscribe('events.job.*.*.completed', {
      callback: (_e, m) => void natsEvents.set(m.subject, m.string()),
    });
  });

  afterAll(async () => {
    await worker?.stop();
    await gateway?.stop();
    await nc?.close();
    await receiver?.close();
    await platform?.close();
  });

  const origin = () => receiver.origin;

  it('when a job completes, then its callback gets the NATS event byte for byte, signed by the Standard Webhooks algorithm', async () => {
    const hook = `${origin()}/signed`;
    const { status, body } = await submit(gateway.url, 'http://media.test/signed.mp4', hook);
    expect(status).toBe(202);
    const [got] = await waitUntil('the signed webhook', () => receiver.to('/signed'), {
      until: (r) => r.length >= 1,
    });
    expect(verifyStandardWebhook(SECRET, got!.headers, got!.body)).toBe(true);
    expect(
      verifyStandardWebhook('whsec_' + Buffer.alloc(24, 7).toString('base64'), got!.headers, got!.body),
    ).toBe(false);
    expect(got!.headers['content-type']).toBe('application/json');
    expect(got!.headers['webhook-id']).toMatch(/^msg_[0-9a-f]{32}$/);
    const event = jobEventSchema.parse(JSON.parse(got!.body));
    expect(event).toMatchObject({ type: 'completed', job_id: body.id, kind: 'download' });
    expect(got!.body).toBe(natsEvents.get(`events.job.download.${body.id}.completed`));
    const [attempt] = await attemptsTo(gateway.url, body.id, hook, (a) => a.length === 1);
    expect(attempt).toMatchObject({ attempt: 1, status: 200, outcome: 'delivered', event: 'completed' });
    expect(attempt!.webhook_id).toBe(got!.headers['webhook-id']);
    // The record keeps everything else: status, result, TTL.
    const rec = await record(gateway.url, body.id);
    expect(rec).toMatchObject({ status: 'completed', result: { file: `${body.id}.mp4` } });
  });

  it('when WEBHOOK_URLS is set, then a job without callback_url is sent there, signed alike', async () => {
    const { body } = await submit(gateway.url, 'http://media.test/no-callback.mp4');
    const got = await waitUntil('the global webhook', () =>
      receiver.to('/global').find((r) => JSON.parse(r.body).job_id === body.id),
    );
    expect(verifyStandardWebhook(SECRET, got.headers, got.body)).toBe(true);
    const [attempt] = await attemptsTo(gateway.url, body.id, `${origin()}/global`, (a) => a.length === 1);
    expect(attempt).toMatchObject({ status: 200, outcome: 'delivered' });
  });

  it('when a job fails, then the callback gets the failed event', async () => {
    const hook = `${origin()}/failed`;
    const { body } = await submit(gateway.url, 'http://media.test/fail.mp4', hook);
    const [got] = await waitUntil('the failed webhook', () => receiver.to('/failed'), {
      until: (r) => r.length >= 1,
    });
    expect(JSON.parse(got!.body)).toMatchObject({
      type: 'failed',
      job_id: body.id,
      error: { code: 'download.unavailable' },
    });
    expect(verifyStandardWebhook(SECRET, got!.headers, got!.body)).toBe(true);
  });

  it('when the receiver answers 500 twice, then it is retried with a growing delay and every attempt is in the record', async () => {
    const hook = `${origin()}/flaky`;
    receiver.script('/flaky', [500, 500]);
    const { body } = await submit(gateway.url, 'http://media.test/flaky.mp4', hook);
    const attempts = await attemptsTo(gateway.url, body.id, hook, (a) =>
      a.some((x) => x.outcome === 'delivered'),
    );
    expect(attempts.map((a) => [a.attempt, a.status, a.outcome])).toEqual([
      [1, 500, 'retrying'],
      [2, 500, 'retrying'],
      [3, 200, 'delivered'],
    ]);
    expect(attempts[0]!.error).toBe('HTTP 500');
    expect(attempts[0]!.next_attempt_at).toBeDefined();
    const at = receiver.to('/flaky').map((r) => r.at);
    // 0.3 s, then 0.6 s (plus jitter): each wait at least the base delay of its attempt.
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(280);
    expect(at[2]! - at[1]!).toBeGreaterThanOrEqual(580);
    // One event, one id, whatever the attempt.
    expect(new Set(receiver.to('/flaky').map((r) => r.headers['webhook-id'])).size).toBe(1);
  });

  it('when the receiver does not answer in time, then the attempt times out and the next one delivers', async () => {
    const hook = `${origin()}/slow`;
    receiver.script('/slow', ['hang']);
    const { body } = await submit(gateway.url, 'http://media.test/slow.mp4', hook);
    const attempts = await attemptsTo(gateway.url, body.id, hook, (a) =>
      a.some((x) => x.outcome === 'delivered'),
    );
    expect(attempts.map((a) => [a.attempt, a.status, a.outcome])).toEqual([
      [1, null, 'retrying'],
      [2, 200, 'delivered'],
    ]);
    expect(attempts[0]!.error).toMatch(/no answer within 2000 ms/);
    expect(attempts[0]!.duration_ms).toBeGreaterThanOrEqual(1900);
  });

  it('when a receiver keeps failing, then it is given up after WEBHOOK_MAX_ATTEMPTS and the record says so', async () => {
    const hook = `${origin()}/down`;
    receiver.script('/down', [], 503);
    const { body } = await submit(gateway.url, 'http://media.test/down.mp4', hook);
    const attempts = await attemptsTo(gateway.url, body.id, hook, (a) =>
      a.some((x) => x.outcome === 'gave_up'),
    );
    expect(attempts.map((a) => a.outcome)).toEqual(['retrying', 'retrying', 'retrying', 'gave_up']);
    expect(attempts.at(-1)!.next_attempt_at).toBeUndefined();
  });

  it("when one receiver hangs, then another job's receiver gets its webhook while that attempt is still open", async () => {
    receiver.script('/hang', [], 'hang');
    await submit(gateway.url, 'http://media.test/hang.mp4', `${origin()}/hang`);
    await waitUntil('an attempt to the hanging receiver', () => receiver.held('/hang') > 0);
    await submit(gateway.url, 'http://media.test/fast.mp4', `${origin()}/fast`);
    const [fast] = await waitUntil('the fast webhook', () => receiver.to('/fast'), {
      until: (r) => r.length >= 1,
    });
    // Delivered while an attempt to the hanging receiver was still open: it waited for no slot.
    expect(fast!.heldMeanwhile['/hang']).toBeGreaterThanOrEqual(1);
    expect(receiver.to('/fast')).toHaveLength(1);
  });

  it('when the same job is submitted again with another callback_url, then the id stays and both URLs get one webhook with one id', async () => {
    const url = 'http://media.test/gated-twice.mp4';
    const first = await submit(gateway.url, url, `${origin()}/first`);
    const second = await submit(gateway.url, url, `${origin()}/second`);
    expect(first.status).toBe(202);
    expect(second.status).toBe(200);
    expect(second.body.cache_hit).toBe(true);
    expect(second.body.id).toBe(first.body.id);
    const open = await waitUntil('the job to run', () => gates.get(first.body.id));
    open();
    await waitUntil('both webhooks', () => receiver.to('/first').length + receiver.to('/second').length, {
      until: (n) => n === 2,
    });
    expect(receiver.to('/first')[0]!.headers['webhook-id']).toBe(
      receiver.to('/second')[0]!.headers['webhook-id'],
    );
    // A third caller after completion is sent the stored event at once, with the same id.
    const third = await submit(gateway.url, url, `${origin()}/third`);
    expect(third.body).toMatchObject({ status: 'completed', cache_hit: true });
    const [late] = await waitUntil('the late webhook', () => receiver.to('/third'), {
      until: (r) => r.length >= 1,
    });
    expect(late!.headers['webhook-id']).toBe(receiver.to('/first')[0]!.headers['webhook-id']);
    expect(late!.body).toBe(receiver.to('/first')[0]!.body);
  });

  it.each([
    ['not a URL', 'hooks', 'webhook.invalid_callback_url'],
    ['an ftp URL', 'ftp://hooks.example/x', 'webhook.invalid_callback_url'],
    ['a URL with credentials', 'https://u:p@hooks.example/x', 'webhook.invalid_callback_url'],
    ['a number', 42, 'request.invalid'],
  ])('when callback_url is %s, then it is a 400 and no job is made', async (_name, callback, code) => {
    const res = await fetch(`${gateway.url}/download`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: 'http://media.test/bad-callback.mp4', callback_url: callback }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error.code).toBe(code);
  });
});

describe('webhooks under the private-address policy', () => {
  let platform: Platform;
  let gateway: Gateway;
  let wav: Buffer;

  beforeAll(async () => {
    platform = await startPlatform();
    gateway = await startGateway(platform.config({ ...ENV, ALLOW_PRIVATE_URLS: 'false' }));
    wav = await readFile(await makeTone(join(platform.dataDir, 'tone.wav')));
  });
  afterAll(async () => {
    await gateway?.stop();
    await platform?.close();
  });

  it.each([
    'http://127.0.0.1:9/hook',
    'http://localhost/hook',
    'http://10.0.0.7/hook',
    'http://[::1]/hook',
    'http://169.254.169.254/latest',
  ])(
    'when callback_url is %s and ALLOW_PRIVATE_URLS=false, then POST /download and POST /normalize are a 400',
    async (callback) => {
      const res = await fetch(`${gateway.url}/download`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ url: 'https://203.0.113.5/video.mp4', callback_url: callback }),
      });
      const body = (await res.json()) as any;
      expect(res.status).toBe(400);
      expect(body.error.code).toBe('webhook.private_callback_url');
      expect(body.error.message).toMatch(/callback_url host .* ALLOW_PRIVATE_URLS=true/);
      const form = new FormData();
      form.append('file', new Blob([new Uint8Array(wav)]), 'a.wav');
      form.append('operations[]', 'convert_to_mono');
      form.append('callback_url', callback);
      const upload = await fetch(`${gateway.url}/normalize`, { method: 'POST', body: form });
      expect(upload.status).toBe(400);
      expect(((await upload.json()) as any).error.code).toBe('webhook.private_callback_url');
      const jobs = (await (await fetch(`${gateway.url}/jobs`)).json()) as any;
      expect(jobs.jobs).toEqual([]);
    },
  );
});

describe('webhooks across a SIGKILL of the gateway', () => {
  let platform: Platform;
  let worker: Worker;
  let receiver: WebhookReceiver;
  const procs: ServiceProcess[] = [];

  beforeAll(async () => {
    platform = await startPlatform();
    receiver = await startWebhookReceiver();
    worker = await startWorker({
      service: 'download-worker',
      kind: 'download',
      config: platform.config(ENV),
      handler: () => testHandler(new Map()),
      concurrency: 2,
      timeoutMs: 30_000,
    });
  });
  // Each test's gateways share the consumers: none may outlive its test.
  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.stop('SIGKILL')));
  });
  afterAll(async () => {
    await worker?.stop();
    await receiver?.close();
    await platform?.close();
  });

  async function spawnGateway(
    overrides: Record<string, string> = {},
  ): Promise<{ proc: ServiceProcess; url: string }> {
    const proc = spawnService('gateway', platform.env({ ...ENV, LOG_LEVEL: 'info', ...overrides }));
    procs.push(proc);
    const port = /"port":(\d+)/.exec(await proc.waitFor(/Gateway listening/))?.[1];
    return { proc, url: `http://127.0.0.1:${port}` };
  }

  it('when the gateway is SIGKILLed during an attempt, then a restarted gateway delivers the webhook', async () => {
    const hook = `${receiver.origin}/killed`;
    receiver.script('/killed', ['hang']);
    const first = await spawnGateway();
    const { body } = await submit(first.url, 'http://media.test/killed.mp4', hook);
    await waitUntil('the attempt in flight', () => receiver.held('/killed') > 0);
    await first.proc.stop('SIGKILL');
    const second = await spawnGateway();
    // The unacknowledged delivery comes back after its ack wait (timeout + 10 s).
    const attempts = await attemptsTo(second.url, body.id, hook, (a) =>
      a.some((x) => x.outcome === 'delivered'),
    );
    expect(attempts.at(-1)).toMatchObject({ status: 200, outcome: 'delivered' });
    const got = receiver.to('/killed');
    expect(got.length).toBeGreaterThanOrEqual(2);
    expect(new Set(got.map((r) => r.headers['webhook-id'])).size).toBe(1);
    expect(verifyStandardWebhook(SECRET, got.at(-1)!.headers, got.at(-1)!.body)).toBe(true);
  });

  it('when the gateway is SIGKILLed between attempts, then the retry schedule survives it', async () => {
    const hook = `${receiver.origin}/between`;
    receiver.script('/between', [500]);
    // A 3 s backoff: the gateway is killed while the delivery waits it out on the server.
    const slow = { WEBHOOK_RETRY_BASE_SECONDS: '3' };
    const first = await spawnGateway(slow);
    const { body } = await submit(first.url, 'http://media.test/between.mp4', hook);
    await attemptsTo(first.url, body.id, hook, (a) => a.length >= 1);
    await first.proc.stop('SIGKILL');
    expect(first.proc.output()).not.toMatch(/Webhook delivered/);
    const second = await spawnGateway(slow);
    const attempts = await attemptsTo(second.url, body.id, hook, (a) =>
      a.some((x) => x.outcome === 'delivered'),
    );
    expect(attempts.map((a) => [a.attempt, a.status])).toEqual([
      [1, 500],
      [2, 200],
    ]);
    // The record is written just before the log line: wait for it rather than read it at once.
    await second.proc.waitFor(/Webhook delivered/);
    expect(Date.parse(attempts[1]!.at) - Date.parse(attempts[0]!.at)).toBeGreaterThanOrEqual(2900);
  });
});
