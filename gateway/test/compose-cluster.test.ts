import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { load } from 'js-yaml';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Redis } from 'ioredis';
import { BUCKETS, EVENTS_STREAM, JOBS_STREAM } from '@media-jobs/libs';
import {
  REPO_ROOT,
  freePort,
  makeMp4,
  makeTone,
  startFixtureServer,
  waitForPort,
  waitUntil,
  type FixtureServer,
} from '@media-jobs/libs/testing';

// docker-compose.yml's `cluster` profile, brought up from the file itself on one host: every
// service's own command, entrypoint and environment, with what Docker would provide put in by
// hand. Each container's ports get free loopback ports, each named volume a folder of its own,
// host names become 127.0.0.1, and the images' programs are this machine's (nats-server,
// redis-server, the services' compiled dist/). If the profile names a host, a port, a route, a
// sentinel or a variable wrong, the cluster here does not come up, or a job does not complete.

type Env = Record<string, string>;
interface ComposeService {
  image?: string;
  build?: unknown;
  profiles?: string[];
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number>;
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
}

/** What a user's `.env` would hold for a cluster on one host: loopback fixtures are allowed. */
const DOT_ENV: Env = {
  ALLOW_PRIVATE_URLS: 'true',
  LOG_LEVEL: 'info',
  JOB_ACK_WAIT_SECONDS: '10',
  RATE_LIMIT_PER_MINUTE: '0',
  RATE_LIMIT_READS_PER_MINUTE: '0',
};

const START_MS = 120_000;
const JOB_MS = 120_000;

let compose: Record<string, ComposeService>;
let cluster: [string, ComposeService][];
const ports = new Map<string, number>();
const volumeDirs = new Map<string, string>();
const children: { name: string; child: ChildProcess; out: () => string }[] = [];
let scratch: string;
let fixtures: FixtureServer;
let nc: NatsConnection | undefined;

/** Compose's `${NAME:-default}` and `${NAME}`, from the `.env` above. */
function interpolate(value: string): string {
  return value.replace(/\$\{([A-Z0-9_]+)(?::-([^}]*))?\}/g, (_m, name: string, fallback?: string) => {
    const v = DOT_ENV[name];
    return v !== undefined && v !== '' ? v : (fallback ?? '');
  });
}

const isNats = (s: ComposeService) => (s.image ?? '').startsWith('nats:');
const isRedis = (s: ComposeService) => (s.image ?? '').startsWith('redis:');
const isSentinel = (s: ComposeService) =>
  isRedis(s) && JSON.stringify(s.entrypoint ?? '').includes('--sentinel');

/** The ports a container of this kind listens on. */
function containerPorts(s: ComposeService): number[] {
  if (isNats(s)) return [4222, 6222, 8222];
  if (isSentinel(s)) return [26379];
  if (isRedis(s)) return [6379];
  return [8000];
}

const portOf = (service: string, port: number): number => {
  const p = ports.get(`${service}:${port}`);
  if (p === undefined)
    throw new Error(`the profile names ${service}:${port}, which no cluster service listens on`);
  return p;
};

/** One string of the file as it reads on this host (host names, ports, the /data and /tmp folders). */
function onHost(self: string, text: string): string {
  const names = cluster.map(([n]) => n).join('|');
  return interpolate(text)
    .replace(new RegExp(`\\b(${names})(:| )(\\d+)\\b`, 'g'), (_m, name: string, sep: string, port: string) =>
      ports.has(`${name}:${port}`) ? `127.0.0.1${sep}${portOf(name, Number(port))}` : _m,
    )
    .replace(/0\.0\.0\.0:(\d+)/g, (_m, port: string) => `127.0.0.1:${portOf(self, Number(port))}`)
    .replace(/\bport (\d+)/g, (m, port: string) =>
      ports.has(`${self}:${port}`) ? `port ${portOf(self, Number(port))}` : m,
    )
    .replace(/(^|[\s'"=])\/data\b/g, (_m, pre: string) => `${pre}${dataDir(self)}`)
    .replace(/\/tmp\//g, `${dataDir(self)}/.tmp-`);
}

/** The folder of the named volume mounted at /data (a fresh one per service if none is). */
function dataDir(self: string): string {
  const mount = (compose[self]?.volumes ?? []).find((v) => v.endsWith(':/data'));
  const volume = mount ? mount.slice(0, -':/data'.length) : `anon-${self}`;
  const dir = volumeDirs.get(volume);
  if (!dir) throw new Error(`no folder for volume ${volume}`);
  return dir;
}

function argv(self: string, list: string[]): string[] {
  const names = new Set(cluster.map(([n]) => n));
  const out: string[] = [];
  for (let i = 0; i < list.length; i++) {
    const arg = interpolate(String(list[i]));
    const next = list[i + 1] === undefined ? undefined : String(list[i + 1]);
    if (names.has(arg) && next !== undefined && ports.has(`${arg}:${next}`)) {
      out.push('127.0.0.1', String(portOf(arg, Number(next)))); // `--replicaof redis-master 6379`
      i++;
    } else if (names.has(arg) && out.at(-1) !== '-n')
      out.push('127.0.0.1'); // an announced host
    else if (/^\d+$/.test(arg) && ports.has(`${self}:${arg}`)) out.push(String(portOf(self, Number(arg))));
    else out.push(onHost(self, arg));
  }
  return out;
}

const asList = (v: string[] | string | undefined): string[] =>
  v === undefined ? [] : Array.isArray(v) ? v : v.split(' ');

/** The process a container of this service runs, with what the image would add. */
function processOf(
  name: string,
  s: ComposeService,
): { command: string; args: string[]; env: Env; cwd: string } {
  const env: Env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' };
  for (const [k, v] of Object.entries(s.environment ?? {})) env[k] = argv(name, [String(v)])[0] as string;
  const line = argv(name, [...asList(s.entrypoint), ...asList(s.command)]);
  if (isNats(s)) {
    // The image's nats-server listens on 4222 on every interface; here, its own port on loopback.
    return {
      command: line[0]!,
      args: [...line.slice(1), '-a', '127.0.0.1', '-p', String(portOf(name, 4222))],
      env,
      cwd: dataDir(name),
    };
  }
  if (isSentinel(s)) {
    const [sh, flag, script] = line;
    return { command: sh!, args: [flag!, `${script} --bind 127.0.0.1`], env, cwd: dataDir(name) };
  }
  if (isRedis(s)) {
    // The image runs redis-server in /data on 6379.
    return {
      command: line[0]!,
      args: [...line.slice(1), '--port', String(portOf(name, 6379)), '--bind', '127.0.0.1'],
      env,
      cwd: dataDir(name),
    };
  }
  if (line[0] !== 'node') throw new Error(`${name}: a service command that is not node: ${line.join(' ')}`);
  // The image's WORKDIR is the repository root, with each package's dist/ built.
  env.HOST = '127.0.0.1';
  return { command: process.execPath, args: line.slice(1), env, cwd: REPO_ROOT };
}

function start(name: string): void {
  const p = processOf(name, compose[name] as ComposeService);
  const child = spawn(p.command, p.args, { cwd: p.cwd, env: p.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  children.push({ name, child, out: () => out });
}

/** Up when its ports accept connections, and a gateway when `/ready` says so; a process that died fails at once. */
async function up(name: string): Promise<void> {
  const entry = children.find((c) => c.name === name);
  const s = compose[name] as ComposeService;
  await waitUntil(
    `${name} to be up`,
    async () => {
      if (entry && entry.child.exitCode !== null)
        throw new Error(`${name} exited ${entry.child.exitCode}:\n${entry.out().slice(-2000)}`);
      if (s.build === undefined) {
        await Promise.all(containerPorts(s).map((c) => waitForPort(portOf(name, c), 1000)));
        return true;
      }
      // A worker or the janitor has no port of its own: alive is all there is to see; the jobs below prove them.
      if (!name.startsWith('gateway')) return true;
      const res = await fetch(`http://127.0.0.1:${portOf(name, 8000)}/ready`);
      return res.ok;
    },
    { timeoutMs: START_MS, intervalMs: 250, retryErrors: true },
  );
}

const gatewayUrl = (name: string) => `http://127.0.0.1:${portOf(name, 8000)}`;

beforeAll(async () => {
  compose = (
    load(await readFile(join(REPO_ROOT, 'docker-compose.yml'), 'utf8')) as {
      services: Record<string, ComposeService>;
    }
  ).services;
  cluster = Object.entries(compose).filter(([, s]) => s.profiles?.includes('cluster'));
  scratch = await mkdtemp(join(tmpdir(), 'mj-compose-cluster-'));
  for (const [name, s] of cluster) {
    for (const c of containerPorts(s)) ports.set(`${name}:${c}`, await freePort());
    const mount = (s.volumes ?? []).find((v) => v.endsWith(':/data'));
    const volume = mount ? mount.slice(0, -':/data'.length) : `anon-${name}`;
    if (!volumeDirs.has(volume)) volumeDirs.set(volume, await mkdtemp(join(scratch, `${volume}-`)));
  }
  fixtures = await startFixtureServer();
  // In depends_on order: whatever a service depends on is up before it starts.
  const started = new Set<string>();
  while (started.size < cluster.length) {
    const ready = cluster.filter(
      ([n, s]) => !started.has(n) && Object.keys(s.depends_on ?? {}).every((d) => started.has(d)),
    );
    if (ready.length === 0) throw new Error('depends_on has a cycle or names a service outside the profile');
    for (const [n] of ready) start(n);
    await Promise.all(ready.map(([n]) => up(n)));
    for (const [n] of ready) started.add(n);
  }
  nc = await connect({
    servers: cluster.filter(([, s]) => isNats(s)).map(([n]) => `127.0.0.1:${portOf(n, 4222)}`),
  });
}, START_MS * 3);

afterAll(async () => {
  await nc?.close().catch(() => undefined);
  // Services first, then the servers they use.
  for (const { child } of [...children].reverse()) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
  await fixtures?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
}, 120_000);

type Body = Record<string, any>;

async function completed(gateway: string, id: string): Promise<Body> {
  return waitUntil(
    `job ${id} to complete`,
    async () => {
      const body = (await (await fetch(`${gateway}/jobs/${id}`)).json()) as Body;
      if (body.status === 'failed') throw new Error(`job ${id} failed: ${JSON.stringify(body.error)}`);
      return body.status === 'completed' ? body : null;
    },
    { timeoutMs: JOB_MS, intervalMs: 300 },
  );
}

describe("docker-compose.yml's cluster profile, run from the file on one host", () => {
  it('when the profile is read, then each app service has STORAGE=nats, R3 and all three NATS nodes, and no two services share a volume', () => {
    const apps = cluster.filter(([, s]) => s.build !== undefined);
    expect(apps.map(([n]) => n).sort()).toEqual([
      'cluster-janitor',
      'download-worker-1',
      'download-worker-2',
      'gateway-1',
      'gateway-2',
      'normalize-worker-1',
      'normalize-worker-2',
    ]);
    const natsNodes = cluster.filter(([, s]) => isNats(s)).map(([n]) => n);
    expect(natsNodes).toHaveLength(3);
    for (const [name, s] of apps) {
      const env = s.environment ?? {};
      expect(env.STORAGE, name).toBe('nats');
      expect(env.NATS_REPLICAS, name).toBe('3');
      for (const node of natsNodes) expect(String(env.NATS_URL), name).toContain(`${node}:4222`);
      expect(String(env.REDIS_SENTINELS).split(','), name).toHaveLength(3);
    }
    const users = new Map<string, string[]>();
    for (const [name, s] of cluster) {
      for (const v of s.volumes ?? []) {
        const volume = v.split(':')[0] as string;
        users.set(volume, [...(users.get(volume) ?? []), name]);
      }
    }
    for (const [volume, names] of users) expect(names, volume).toHaveLength(1);
  });

  it('when the profile is up, then JOBS, EVENTS and the buckets have 3 replicas, and the sentinels see the master with its replica', async () => {
    const jsm = await jetstreamManager(nc as NatsConnection);
    for (const stream of [JOBS_STREAM, EVENTS_STREAM, ...BUCKETS.map((b) => `OBJ_${b}`)]) {
      expect((await jsm.streams.info(stream)).config.num_replicas, stream).toBe(3);
    }
    const sentinel = new Redis({ host: '127.0.0.1', port: portOf('sentinel-1', 26379), lazyConnect: true });
    try {
      await sentinel.connect();
      await waitUntil(
        'the sentinels to know the replica and each other',
        async () => {
          const replicas = (await sentinel.call('SENTINEL', 'REPLICAS', 'mymaster')) as unknown[];
          const others = (await sentinel.call('SENTINEL', 'SENTINELS', 'mymaster')) as unknown[];
          return replicas.length === 1 && others.length === 2;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      const master = (await sentinel.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mymaster')) as string[];
      expect(master).toEqual(['127.0.0.1', String(portOf('redis-master', 6379))]);
    } finally {
      sentinel.disconnect();
    }
  }, 90_000);

  it(
    'when a download goes to one gateway and an upload to the other, then both complete and each file is served by the other gateway',
    async () => {
      const mp4 = await makeMp4({ width: 320, height: 180, seconds: 1 });
      fixtures.mount('mp4', join(mp4, '..'));
      const one = gatewayUrl('gateway-1');
      const two = gatewayUrl('gateway-2');

      const download = await fetch(`${one}/download`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ url: `${fixtures.origin}/mp4/${basename(mp4)}`, quality: 'best' }),
      });
      expect(download.status).toBe(202);
      const tone = await readFile(await makeTone(join(scratch, 'tone.wav'), { hz: 440, seconds: 1 }));
      const form = new FormData();
      form.append('operations[]', 'convert_to_mono');
      form.append('format', 'wav');
      form.append('file', new Blob([new Uint8Array(tone)], { type: 'audio/wav' }), 'tone.wav');
      const upload = await fetch(`${two}/normalize`, { method: 'POST', body: form });
      expect(upload.status).toBe(202);

      const jobs: [string, Body][] = [
        [two, await completed(two, ((await download.json()) as Body).id as string)],
        [one, await completed(one, ((await upload.json()) as Body).id as string)],
      ];
      for (const [gateway, record] of jobs) {
        const res = await fetch(`${gateway}/jobs/${record.id}/file`);
        expect(res.status, record.id).toBe(200);
        expect(Buffer.from(await res.arrayBuffer()).length, record.id).toBe(record.result.size_bytes);
      }
    },
    JOB_MS * 2,
  );
});
