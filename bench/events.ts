/**
 * `npm run bench:events`: how fast a job event reaches the people watching it, in one run, on
 * servers of its own (nats-server with its monitoring port, redis-server, a temp DATA_DIR).
 *
 * (a) Live events over SSE: BENCH_WATCHERS (1,000) concurrent `GET /jobs/:id/events` streams on
 *     one gateway, spread evenly over BENCH_JOBS (20) queued download jobs (made with
 *     `POST /download`; no worker runs). The bench then publishes, as a worker does (the
 *     workers' own `EventPublisher`, so subjects and payloads are the real ones), BENCH_ROUNDS
 *     (30) `progress` events per job at 5 a second per job, the jobs staggered evenly (one event
 *     every 10 ms on some job), then one `completed` event per job, which ends its streams.
 *     Latency is from the `publish()` call to the moment a watcher's socket hands it the bytes
 *     of that event, for every (watcher, event) pair. Target: p99 <= 20 ms.
 *     Gateway memory per watcher: heap used and RSS of the gateway process after a forced GC,
 *     with the watchers connected minus before they connected (after a warm-up pass), / watchers.
 *     Side by side, the floor: a bare node:http SSE server (one NATS subscription to
 *     `events.job.>`, each event formatted once and written to the streams of its job) under
 *     the same watchers and the same events. The two alternate, BENCH_REPS (2) passes each.
 * (b) NATS: a plain core subscriber of `events.job.>` (its own connection) times 1,000
 *     `completed` events published one every 2 ms while nothing else runs, alternating with a
 *     raw pub→sub round trip of a 16-byte message on a subject of its own (the floor).
 *     Target: completed p99 <= 5 ms. The same subscriber also times every event of (a), under
 *     the SSE load (reported, no target).
 * After each pass the bench checks the subscriptions nats-server holds (`/subsz`): after all
 * streams ended with `completed`, and again after 1,000 watchers connected and then all hung up
 * at once, the count must be back to where it was before the watchers came (no leak).
 *
 * Honest numbers on a 2-core machine: the gateway (and the bare server) runs as its own
 * process (`startGateway` from gateway/src/gateway.ts through tsx, `--expose-gc` for the memory
 * figures) and the 1,000 watchers as another process, so neither the load generator nor the
 * publisher shares the gateway's event loop; the publisher and the plain subscriber are in
 * this process. The clocks agree: every process reads the same monotonic clock
 * (`process.hrtime`). Each latency therefore includes nats-server, the gateway's fan-out, the
 * kernel and the watcher process reading 1,000 sockets: the bare server pays the same costs,
 * which is why it is printed beside. Logs at `warn` (no request log); rate limits off, since
 * all watchers come from one address.
 *
 * Knobs (environment): BENCH_WATCHERS (1000), BENCH_JOBS (20), BENCH_ROUNDS (30, at most 99),
 * BENCH_REPS (2), BENCH_CPU_PROF=1 (writes the gateway's `--cpu-prof` to
 * `<os temp>/media-jobs-bench/events-prof/`). Progress goes to stderr, the table to stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  connectNats,
  createLogger,
  ensureJetStream,
  EventPublisher,
  loadConfig,
  type NatsConnection,
} from '@media-jobs/libs';
import { freePort, managed, startRedis, tempDataDir, type TestServer } from '@media-jobs/libs/testing';
import { positiveInt, progress } from './knobs.js';

const ROLE = process.env.BENCH_EVENTS_ROLE ?? '';
const WATCHERS = positiveInt('BENCH_WATCHERS', 1000);
const JOBS = positiveInt('BENCH_JOBS', 20);
const ROUNDS = Math.min(99, positiveInt('BENCH_ROUNDS', 30));
const REPS = positiveInt('BENCH_REPS', 2);
const CPU_PROF = process.env.BENCH_CPU_PROF === '1';
const PER_JOB_PER_SECOND = 5;
const NATS_EVENTS = 1000;
const NATS_GAP_MS = 2;
const SELF = fileURLToPath(import.meta.url);

/** Milliseconds on the monotonic clock every process on this machine shares. */
const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// --- IPC between this process and its children -----------------------------------------

type Msg = { id?: number; type: string } & Record<string, unknown>;

/** A child process of this same file in another role, asked things over IPC. */
class Child {
  private next = 1;
  private readonly pending = new Map<number, (m: Msg) => void>();
  readonly ready: Promise<Msg>;

  constructor(
    readonly proc: ChildProcess,
    readonly role: string,
  ) {
    let onReady: (m: Msg) => void = () => {};
    this.ready = new Promise((resolve, reject) => {
      onReady = resolve;
      proc.once('exit', (code, signal) => reject(new Error(`${role} exited early (${code ?? signal})`)));
    });
    proc.on('message', (m: Msg) => {
      if (m.type === 'ready') onReady(m);
      const resolve = m.id === undefined ? undefined : this.pending.get(m.id);
      if (resolve && m.id !== undefined) {
        this.pending.delete(m.id);
        resolve(m);
      }
    });
  }

  ask(type: string, body: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<Msg> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.role}: no answer to ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, (m) => {
        clearTimeout(timer);
        if (typeof m.error === 'string') reject(new Error(`${this.role}: ${m.error}`));
        else resolve(m);
      });
      this.proc.send({ id, type, ...body });
    });
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
    this.proc.send({ type: 'exit' });
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
}

function spawnRole(role: string, env: Record<string, string>, nodeFlags: string[] = []): Child {
  const proc = spawn(
    process.execPath,
    [...nodeFlags, '--conditions=media-jobs-source', '--import', 'tsx', SELF],
    {
      env: { ...process.env, ...env, BENCH_EVENTS_ROLE: role },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  return new Child(proc, role);
}

/** In a child: answers the parent's questions with `handlers`. */
type Handler = (m: Msg) => Promise<Record<string, unknown> | void> | Record<string, unknown> | void;

function serve(handlers: Record<string, Handler>) {
  process.on('message', (m: Msg) => {
    if (m.type === 'exit') {
      void (async () => {
        await handlers.exit?.(m);
        process.exit(0);
      })();
      return;
    }
    const handler = handlers[m.type];
    void (async () => {
      try {
        if (!handler) throw new Error(`no handler for ${m.type}`);
        process.send?.({ id: m.id, type: 'answer', ...((await handler(m)) ?? {}) });
      } catch (err) {
        process.send?.({ id: m.id, type: 'answer', error: err instanceof Error ? err.message : String(err) });
      }
    })();
  });
  // The parent died: do not linger.
  process.on('disconnect', () => process.exit(0));
}

function memory(): Record<string, number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external };
}

// --- role: the gateway, as its own process ----------------------------------------------

async function gatewayRole(): Promise<void> {
  const { startGateway } = await import('../gateway/src/gateway.js');
  const config = loadConfig(process.env);
  const gateway = await startGateway(config, createLogger('gateway', config));
  serve({ memory: () => memory(), exit: () => gateway.stop() });
  process.send?.({ type: 'ready', url: gateway.url });
}

// --- role: the floor, a bare node:http SSE server ---------------------------------------

async function bareRole(): Promise<void> {
  const config = loadConfig(process.env);
  const nc = await connectNats(config, 'bench-bare-sse');
  const streams = new Map<string, Set<ServerResponse>>();
  nc.subscribe('events.job.>', {
    callback: (err, msg) => {
      if (err) return;
      const parts = msg.subject.split('.');
      const id = parts[3] ?? '';
      const type = parts[4] ?? '';
      const set = streams.get(id);
      if (!set) return;
      const chunk = `event: ${type}\ndata: ${msg.string()}\n\n`;
      const terminal = type === 'completed' || type === 'failed' || type === 'deleted';
      for (const res of set) {
        res.write(chunk);
        if (terminal) res.end();
      }
      if (terminal) streams.delete(id);
    },
  });
  await nc.flush();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const match = /^\/jobs\/([A-Za-z0-9_-]+)\/events$/.exec(req.url ?? '');
    if (!match) {
      res.writeHead(404).end();
      return;
    }
    const id = match[1]!;
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache' });
    res.write(`event: state\ndata: {"id":"${id}"}\n\n`);
    let set = streams.get(id);
    if (!set) streams.set(id, (set = new Set()));
    set.add(res);
    res.on('close', () => set.delete(res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  serve({
    memory: () => memory(),
    exit: async () => {
      server.closeAllConnections();
      server.close();
      await nc.close();
    },
  });
  process.send?.({ type: 'ready', url: `http://127.0.0.1:${port}` });
}

// --- role: the watchers, as their own process -------------------------------------------

interface Watcher {
  job: number;
  res?: IncomingMessage;
  req?: ReturnType<typeof request>;
  buf: string;
  /** Flattened (seq, receipt ms) pairs; seq 100 = `completed`. */
  got: number[];
  state: boolean;
  ended: boolean;
}

function watchersRole(): void {
  let watchers: Watcher[] = [];

  const open = (base: URL, id: string, w: Watcher, onReady: () => void) => {
    let readied = false;
    const onState = () => {
      if (readied) return;
      readied = true;
      onReady();
    };
    const req = request(
      { host: base.hostname, port: base.port, path: `/jobs/${id}/events`, agent: false },
      (res) => {
        w.res = res;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          const t = nowMs();
          w.buf += chunk;
          let cut: number;
          while ((cut = w.buf.indexOf('\n\n')) >= 0) {
            const block = w.buf.slice(0, cut);
            w.buf = w.buf.slice(cut + 2);
            if (block.startsWith('event: state')) {
              w.state = true;
              onState();
            } else if (block.startsWith('event: progress')) {
              const m = /"progress":(\d+)/.exec(block);
              if (m) w.got.push(Number(m[1]), t);
            } else if (block.startsWith('event: completed')) w.got.push(100, t);
          }
        });
        const gone = () => {
          w.ended = true;
          onState();
        };
        res.on('end', gone);
        res.on('error', gone);
      },
    );
    req.on('error', () => {
      w.ended = true;
      onState();
    });
    req.end();
    w.req = req;
  };

  serve({
    /** Opens `count` streams over `ids`, 100 at a time; answers once each has its state. */
    async connect(m) {
      const base = new URL(String(m.base));
      const ids = m.ids as string[];
      const count = Number(m.count);
      const started = nowMs();
      watchers = [];
      for (let i = 0; i < count; i += 100) {
        const batch: Promise<void>[] = [];
        for (let j = i; j < Math.min(count, i + 100); j += 1) {
          const w: Watcher = { job: j % ids.length, buf: '', got: [], state: false, ended: false };
          watchers.push(w);
          batch.push(new Promise((resolve) => open(base, ids[w.job]!, w, resolve)));
        }
        await Promise.all(batch);
      }
      return { ms: nowMs() - started };
    },
    /** Waits until every stream has ended (or `timeoutMs`), then hands over what each received. */
    async collect(m) {
      const deadline = nowMs() + Number(m.timeoutMs ?? 10_000);
      while (watchers.some((w) => !w.ended) && nowMs() < deadline) await sleep(20);
      const ended = watchers.filter((w) => w.ended).length;
      const got = watchers.map((w) => [w.job, ...w.got]);
      for (const w of watchers) w.req?.destroy();
      watchers = [];
      return { ended, got };
    },
    /** Every watcher hangs up at once. */
    hangup() {
      for (const w of watchers) w.req?.destroy();
      const n = watchers.length;
      watchers = [];
      return { n };
    },
  });
  process.send?.({ type: 'ready' });
}

// --- the measurements -------------------------------------------------------------------

interface Stats {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

function stats(xs: number[]): Stats {
  const s = Float64Array.from(xs).sort();
  const at = (q: number) => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? Number.NaN;
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? Number.NaN };
}

const pubKey = (job: number, seq: number) => job * 1000 + seq;

interface Pass {
  server: 'gateway' | 'bare';
  connectMs: number;
  live: Stats;
  completed: Stats;
  missing: number;
  ended: number;
  subsBefore: number;
  subsWith: number;
  subsAfterEnd: number;
  subsAfterHangup: number;
  heapPerWatcher: number;
  rssPerWatcher: number;
  natsLive: Stats;
}

async function subscriptions(monitorUrl: string): Promise<number> {
  const body = (await (await fetch(`${monitorUrl}/subsz`)).json()) as { num_subscriptions: number };
  return body.num_subscriptions;
}

/** Waits until nats-server's subscription count settles at `want` (or 5 s), returns what it saw. */
async function settledSubscriptions(monitorUrl: string, want: number): Promise<number> {
  const deadline = Date.now() + 5000;
  let n = await subscriptions(monitorUrl);
  while (n !== want && Date.now() < deadline) {
    await sleep(100);
    n = await subscriptions(monitorUrl);
  }
  return n;
}

/** Publishes ROUNDS progress events per job, staggered, then one completed per job. */
async function publishEvents(
  publisher: EventPublisher,
  ids: string[],
  sent: Map<number, number>,
  rounds: number,
): Promise<void> {
  const gap = 1000 / PER_JOB_PER_SECOND / ids.length;
  const start = performance.now();
  let k = 0;
  for (let r = 1; r <= rounds + 1; r += 1) {
    for (let j = 0; j < ids.length; j += 1) {
      const due = start + k * gap;
      k += 1;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      const id = ids[j]!;
      if (r <= rounds) {
        sent.set(pubKey(j, r), nowMs());
        publisher.job('download', id, 'progress', { progress: r, stage: 'downloading' });
      } else {
        sent.set(pubKey(j, 100), nowMs());
        publisher.job('download', id, 'completed', {
          result: {
            file: `${id}.mp4`,
            size_bytes: 12_345_678,
            duration_s: 212.4,
            width: 1280,
            height: 720,
            video_codec: 'h264',
            audio_codec: 'aac',
            container: 'mp4',
            quality: 'best',
          },
          duration_ms: 8123,
        });
      }
    }
  }
}

interface Env {
  env: Record<string, string>;
  monitorUrl: string;
  publisher: EventPublisher;
  /** Receipts of the plain subscriber: pubKey → ms. */
  natsGot: Map<string, Map<number, number>>;
  watchers: Child;
}

async function pass(server: 'gateway' | 'bare', e: Env, ids: string[], rep: number): Promise<Pass> {
  const flags = ['--expose-gc'];
  if (server === 'gateway' && CPU_PROF) {
    const dir = join(tmpdir(), 'media-jobs-bench', 'events-prof');
    await mkdir(dir, { recursive: true });
    flags.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
  }
  const child = spawnRole(server, e.env, flags);
  try {
    const { url } = (await child.ready) as Msg & { url: string };
    const label = `${server} pass ${rep}`;
    // Warm-up: a tenth of the watchers, a few rounds, so code and buffers exist before "none".
    progress(`  ${label}: warm-up`);
    await e.watchers.ask('connect', { base: url, ids, count: Math.ceil(WATCHERS / 10) });
    await publishEvents(e.publisher, ids, new Map(), 3);
    await e.watchers.ask('collect', { timeoutMs: 5000 });
    const subsBefore = await settledSubscriptions(e.monitorUrl, await subscriptions(e.monitorUrl));
    await sleep(200);
    const mem0 = await child.ask('memory');

    progress(`  ${label}: ${WATCHERS} watchers on ${ids.length} jobs`);
    const connected = await e.watchers.ask('connect', { base: url, ids, count: WATCHERS }, 120_000);
    await sleep(200);
    const mem1 = await child.ask('memory');
    const subsWith = await subscriptions(e.monitorUrl);

    progress(`  ${label}: ${ROUNDS} progress events per job at ${PER_JOB_PER_SECOND}/s, then completed`);
    const sent = new Map<number, number>();
    e.natsGot.clear();
    await publishEvents(e.publisher, ids, sent, ROUNDS);
    const { ended, got } = (await e.watchers.ask('collect', { timeoutMs: 15_000 })) as Msg & {
      ended: number;
      got: number[][];
    };
    const live: number[] = [];
    const completed: number[] = [];
    let missing = 0;
    for (const [job, ...pairs] of got) {
      let seen = 0;
      for (let i = 0; i + 1 < pairs.length; i += 2) {
        const seq = pairs[i]!;
        const t0 = sent.get(pubKey(job!, seq));
        if (t0 === undefined) continue;
        seen += 1;
        (seq === 100 ? completed : live).push(pairs[i + 1]! - t0);
      }
      missing += ROUNDS + 1 - seen;
    }
    const natsLive: number[] = [];
    ids.forEach((id, j) => {
      for (const [seq, t] of e.natsGot.get(id) ?? []) {
        const t0 = sent.get(pubKey(j, seq));
        if (t0 !== undefined) natsLive.push(t - t0);
      }
    });
    const subsAfterEnd = await settledSubscriptions(e.monitorUrl, subsBefore);

    progress(`  ${label}: ${WATCHERS} watchers connect, then all hang up at once`);
    await e.watchers.ask('connect', { base: url, ids, count: WATCHERS }, 120_000);
    await e.watchers.ask('hangup');
    const subsAfterHangup = await settledSubscriptions(e.monitorUrl, subsBefore);

    const delta = (k: string) => (Number(mem1[k]) - Number(mem0[k])) / WATCHERS;
    return {
      server,
      connectMs: Number(connected.ms),
      live: stats(live),
      completed: stats(completed),
      missing,
      ended,
      subsBefore,
      subsWith,
      subsAfterEnd,
      subsAfterHangup,
      heapPerWatcher: delta('heapUsed'),
      rssPerWatcher: delta('rss'),
      natsLive: stats(natsLive),
    };
  } finally {
    await child.stop();
  }
}

/** (b): completed events to a plain subscriber, alternating with a raw round trip. */
async function natsPhase(
  publisher: EventPublisher,
  pubNc: NatsConnection,
  subNc: NatsConnection,
): Promise<{ completed: Stats; raw: Stats }> {
  const sentCompleted = new Map<string, number>();
  const sentRaw = new Map<string, number>();
  const completed: number[] = [];
  const raw: number[] = [];
  const subA = subNc.subscribe('events.job.>', {
    callback: (_err, msg) => {
      const t = nowMs();
      const parts = msg.subject.split('.');
      if (parts[4] !== 'completed') return;
      const t0 = sentCompleted.get(parts[3] ?? '');
      if (t0 !== undefined) completed.push(t - t0);
    },
  });
  const subB = subNc.subscribe('bench.raw.*', {
    callback: (_err, msg) => {
      const t = nowMs();
      const t0 = sentRaw.get(msg.subject.slice('bench.raw.'.length));
      if (t0 !== undefined) raw.push(t - t0);
    },
  });
  await subNc.flush();
  const payload = new Uint8Array(16);
  for (let i = 0; i < NATS_EVENTS; i += 1) {
    const id = `natsbench${i}_best`;
    sentCompleted.set(id, nowMs());
    publisher.job('download', id, 'completed', {
      result: { file: `${id}.mp4`, size_bytes: 12_345_678, duration_s: 212.4, container: 'mp4' },
      duration_ms: 8123,
    });
    await sleep(NATS_GAP_MS / 2);
    sentRaw.set(String(i), nowMs());
    pubNc.publish(`bench.raw.${i}`, payload);
    await sleep(NATS_GAP_MS / 2);
    if ((i + 1) % 250 === 0) progress(`  ${i + 1}/${NATS_EVENTS}`);
  }
  await pubNc.flush();
  await subNc.flush();
  await sleep(200);
  subA.unsubscribe();
  subB.unsubscribe();
  return { completed: stats(completed), raw: stats(raw) };
}

// --- main -------------------------------------------------------------------------------

const ms = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');
const verdict = (ok: boolean) => (ok ? 'ok' : 'MISSED');
const spread = (xs: number[]) =>
  xs.length > 1 ? `${ms(Math.min(...xs))}-${ms(Math.max(...xs))}` : ms(xs[0]!);

async function startNatsMonitored(): Promise<{ nats: TestServer; monitorUrl: string }> {
  const [port, monitor] = [await freePort(), await freePort()];
  const dir = await mkdtemp(join(tmpdir(), 'mj-nats-'));
  const nats = managed('nats', port, dir, 'nats-server', [
    '-js',
    '-a',
    '127.0.0.1',
    '-p',
    String(port),
    '-m',
    String(monitor),
    '-sd',
    dir,
  ]);
  await nats.start();
  return { nats, monitorUrl: `http://127.0.0.1:${monitor}` };
}

async function main(): Promise<void> {
  const started = performance.now();
  progress('starting nats-server (with monitoring), redis-server and the watcher process');
  const [{ nats, monitorUrl }, redis, data] = await Promise.all([
    startNatsMonitored(),
    startRedis(),
    tempDataDir(),
  ]);
  const env: Record<string, string> = {
    NATS_URL: nats.url,
    REDIS_URL: redis.url,
    DATA_DIR: data.dir,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    ALLOW_PRIVATE_URLS: 'true',
    RATE_LIMIT_PER_MINUTE: '0',
    RATE_LIMIT_READS_PER_MINUTE: '0',
  };
  const config = loadConfig(env);
  const pubNc = await connectNats(config, 'bench-worker');
  await ensureJetStream(pubNc, config);
  const publisher = new EventPublisher(pubNc);
  const subNc = await connectNats(config, 'bench-subscriber');
  const natsGot = new Map<string, Map<number, number>>();
  subNc.subscribe('events.job.>', {
    callback: (_err, msg) => {
      const t = nowMs();
      const parts = msg.subject.split('.');
      const id = parts[3] ?? '';
      const type = parts[4];
      let seq: number | undefined;
      if (type === 'completed') seq = 100;
      else if (type === 'progress') seq = (msg.json() as { progress: number }).progress;
      if (seq === undefined) return;
      let m = natsGot.get(id);
      if (!m) natsGot.set(id, (m = new Map()));
      m.set(seq, t);
    },
  });
  await subNc.flush();
  const watchers = spawnRole('watchers', env);
  const passes: Pass[] = [];
  let nats_: { completed: Stats; raw: Stats } | undefined;
  try {
    await watchers.ready;
    // The jobs: real queued download records, made through a gateway's API (no worker runs).
    progress(`making ${JOBS} queued download jobs through POST /download`);
    const maker = spawnRole('gateway', env);
    const ids: string[] = [];
    try {
      const { url } = (await maker.ready) as Msg & { url: string };
      for (let i = 0; i < JOBS; i += 1) {
        const res = await fetch(`${url}/download`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ url: `http://127.0.0.1:9/bench-events/${i}.mp4`, quality: 'best' }),
        });
        const body = (await res.json()) as { id?: string };
        if (res.status !== 202 || !body.id) throw new Error(`POST /download answered ${res.status}`);
        ids.push(body.id);
      }
    } finally {
      await maker.stop();
    }

    const e: Env = { env, monitorUrl, publisher, natsGot, watchers: watchers };
    for (let rep = 1; rep <= REPS; rep += 1) {
      // Alternate which goes first, so neither always runs on a warmer machine.
      const order = rep % 2 === 1 ? (['bare', 'gateway'] as const) : (['gateway', 'bare'] as const);
      for (const server of order) {
        progress(`(a) ${server}, pass ${rep}/${REPS}`);
        const p = await pass(server, e, ids, rep);
        passes.push(p);
        progress(
          `  ${server}: p50 ${ms(p.live.p50)} ms, p99 ${ms(p.live.p99)} ms, heap ${(p.heapPerWatcher / 1024).toFixed(1)} KiB/watcher`,
        );
      }
    }
    progress(`(b) ${NATS_EVENTS} completed events to a plain subscriber, alternating with raw pub/sub`);
    nats_ = await natsPhase(publisher, pubNc, subNc);
  } finally {
    progress('stopping');
    await watchers.stop();
    await pubNc.close();
    await subNc.close();
    await Promise.all([nats.close(), redis.close()]);
    await data.remove();
  }

  const of = (server: Pass['server']) => passes.filter((p) => p.server === server);
  const gw = of('gateway');
  const bare = of('bare');
  const worst = (ps: Pass[], f: (p: Pass) => number) => Math.max(...ps.map(f));
  const row = (name: string, ps: Pass[], f: (p: Pass) => number, target = '') =>
    `  ${name.padEnd(44)}${ps.map((p) => ms(f(p)).padStart(9)).join('')}   ${target}`;
  const kib = (x: number) => x / 1024;
  const gwP99 = worst(gw, (p) => p.live.p99);
  const leak = gw.some((p) => p.subsAfterEnd !== p.subsBefore || p.subsAfterHangup !== p.subsBefore);
  const lines = [
    '',
    `Events benchmark: ${WATCHERS} SSE watchers over ${JOBS} jobs, ${ROUNDS} progress events per job at ${PER_JOB_PER_SECOND}/s + completed; ${REPS} passes each, alternating; node ${process.version}; ${((performance.now() - started) / 1000).toFixed(0)} s`,
    '',
    `(a) publish → SSE watcher, ms, per pass (${gw[0]?.live.n ?? 0} progress receipts + ${gw[0]?.completed.n ?? 0} completed per pass)`,
    `  ${''.padEnd(44)}${passes
      .filter((p) => p.server === 'bare')
      .map((_, i) => `bare #${i + 1}`.padStart(9))
      .join('')}`,
    row('bare SSE server, progress p50', bare, (p) => p.live.p50),
    row('bare SSE server, progress p99', bare, (p) => p.live.p99),
    row('bare SSE server, completed p99', bare, (p) => p.completed.p99),
    row('bare SSE server, heap KiB per watcher', bare, (p) => kib(p.heapPerWatcher)),
    row('bare SSE server, RSS KiB per watcher', bare, (p) => kib(p.rssPerWatcher)),
    `  ${''.padEnd(44)}${gw.map((_, i) => `gw #${i + 1}`.padStart(9)).join('')}`,
    row('gateway, progress p50', gw, (p) => p.live.p50),
    row(
      'gateway, progress p99',
      gw,
      (p) => p.live.p99,
      `target <= 20 ms: worst ${ms(gwP99)} ${verdict(gwP99 <= 20)}`,
    ),
    row('gateway, progress max', gw, (p) => p.live.max),
    row('gateway, completed p99', gw, (p) => p.completed.p99),
    row('gateway, heap KiB per watcher', gw, (p) => kib(p.heapPerWatcher)),
    row('gateway, RSS KiB per watcher', gw, (p) => kib(p.rssPerWatcher)),
    row('gateway, connect all watchers (ms)', gw, (p) => p.connectMs),
    row('plain NATS subscriber during the SSE load, p99', gw, (p) => p.natsLive.p99),
    `  gateway p99 / bare p99 (medians of passes): ${ms(medianOf(gw.map((p) => p.live.p99)) / medianOf(bare.map((p) => p.live.p99)))}x; spread of gateway p99 ${spread(gw.map((p) => p.live.p99))} ms`,
    `  events lost: gateway ${gw.reduce((n, p) => n + p.missing, 0)}, bare ${bare.reduce((n, p) => n + p.missing, 0)}; streams ended by completed: ${gw.map((p) => p.ended).join(', ')} of ${WATCHERS}`,
    `  NATS subscriptions (nats-server /subsz), gateway: before ${gw.map((p) => p.subsBefore).join('/')}, with ${WATCHERS} watchers ${gw.map((p) => p.subsWith).join('/')}, after completed ${gw.map((p) => p.subsAfterEnd).join('/')}, after ${WATCHERS} hang-ups ${gw.map((p) => p.subsAfterHangup).join('/')}  ${leak ? 'LEAK' : 'no leak'}`,
    '',
    `(b) publish → plain NATS subscriber (events.job.>), ${NATS_EVENTS} each, one every ${NATS_GAP_MS} ms, ms`,
    '  measurement                         p50      p99      max',
    `  raw pub/sub, 16 bytes (the floor)${ms(nats_.raw.p50).padStart(8)}${ms(nats_.raw.p99).padStart(9)}${ms(nats_.raw.max).padStart(9)}`,
    `  completed event                  ${ms(nats_.completed.p50).padStart(8)}${ms(nats_.completed.p99).padStart(9)}${ms(nats_.completed.max).padStart(9)}   target p99 <= 5 ms ${verdict(nats_.completed.p99 <= 5)}`,
    '',
  ];
  process.stdout.write(lines.join('\n'));
}

function medianOf(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const roles: Record<string, () => Promise<void> | void> = {
  gateway: gatewayRole,
  bare: bareRole,
  watchers: watchersRole,
};

const role = roles[ROLE];
if (role) {
  await Promise.resolve(role()).catch((err: unknown) => {
    process.stderr.write(
      `bench:events ${ROLE} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  });
} else {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(
        `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exit(1);
    },
  );
}
