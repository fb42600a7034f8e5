import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Redis } from 'ioredis';
import { freePort, managed, type TestServer } from './servers.js';
import { waitUntil } from './wait.js';

/** Polls `check` until it gives a value other than null; errors (no leader yet) count as "not yet". */
function poll<T>(what: string, check: () => Promise<T | null>, timeoutMs: number): Promise<T> {
  return waitUntil(what, check, { timeoutMs, intervalMs: 100, retryErrors: true }) as Promise<T>;
}

export interface NatsCluster {
  readonly nodes: readonly (TestServer & { readonly name: string })[];
  /** Every node's client URL, comma-separated, as `NATS_URL` takes them. */
  readonly urls: string;
  /** The node that leads the stream now. */
  leaderOf(stream: string): Promise<TestServer & { readonly name: string }>;
  /** Resolves once JetStream has a meta leader and answers. */
  ready(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * `size` real `nats-server -js` nodes on loopback, routed to each other as one cluster, each
 * with its own store. A node can be stopped and started again on the same ports and data.
 */
export async function startNatsCluster(size = 3): Promise<NatsCluster> {
  const ports = await Promise.all(
    Array.from({ length: size }, async () => [await freePort(), await freePort()]),
  );
  const root = await mkdtemp(join(tmpdir(), 'mj-nats-cluster-'));
  const routes = ports.map(([, c]) => `nats://127.0.0.1:${c}`).join(',');
  const nodes = await Promise.all(
    ports.map(async ([port, clusterPort], i) => {
      const name = `n${i + 1}`;
      const dir = join(root, name);
      await mkdir(dir, { recursive: true });
      const server = managed('nats', port as number, dir, 'nats-server', [
        '-js',
        '-a',
        '127.0.0.1',
        '-p',
        String(port),
        '-sd',
        dir,
        '-n',
        name,
        '--cluster_name',
        'media-jobs-test',
        '--cluster',
        `nats://127.0.0.1:${clusterPort}`,
        '--routes',
        routes,
      ]);
      return Object.assign(server, { name });
    }),
  );
  await Promise.all(nodes.map((n) => n.start()));
  const urls = nodes.map((n) => n.url).join(',');
  const cluster: NatsCluster = {
    nodes,
    urls,
    async ready(timeoutMs = 30_000) {
      const nc = await connect({ servers: urls.split(','), maxReconnectAttempts: -1 });
      try {
        await poll(
          'a JetStream meta leader',
          async () => {
            const jsm = await jetstreamManager(nc, { timeout: 2000 });
            await jsm.getAccountInfo();
            return true;
          },
          timeoutMs,
        );
      } finally {
        await nc.close();
      }
    },
    async leaderOf(stream) {
      const nc = await connect({ servers: urls.split(','), maxReconnectAttempts: -1 });
      try {
        return await poll(
          `the leader of ${stream}`,
          async () => {
            const jsm = await jetstreamManager(nc, { timeout: 2000 });
            const leader = (await jsm.streams.info(stream)).cluster?.leader;
            return nodes.find((n) => n.name === leader) ?? null;
          },
          30_000,
        );
      } finally {
        await nc.close();
      }
    },
    async close() {
      await Promise.all(nodes.map((n) => n.stop()));
      await rm(root, { recursive: true, force: true });
    },
  };
  await cluster.ready();
  return cluster;
}

export interface RedisSentinelSet {
  readonly master: TestServer;
  readonly replica: TestServer;
  readonly sentinels: readonly TestServer[];
  /** `host:port,...` of the sentinels, as `REDIS_SENTINELS` takes them. */
  readonly sentinelList: string;
  readonly name: string;
  /** `host:port` of the master the sentinels name now. */
  currentMaster(): Promise<string>;
  close(): Promise<void>;
}

/**
 * A real Redis master with one replica and three sentinels (quorum 2) on loopback; a master
 * that stops answering for a second is failed over to the replica.
 */
export async function startRedisSentinels(name = 'mymaster'): Promise<RedisSentinelSet> {
  const root = await mkdtemp(join(tmpdir(), 'mj-redis-sentinel-'));
  const [masterPort, replicaPort, ...sentinelPorts] = await Promise.all(
    Array.from({ length: 5 }, () => freePort()),
  );
  const redisArgs = (port: number, dir: string, extra: string[] = []) => [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    ...extra,
  ];
  const folder = async (sub: string) => {
    const dir = join(root, sub);
    await mkdir(dir, { recursive: true });
    return dir;
  };
  const master = managed(
    'redis',
    masterPort as number,
    await folder('master'),
    'redis-server',
    redisArgs(masterPort as number, join(root, 'master')),
  );
  const replica = managed(
    'redis',
    replicaPort as number,
    await folder('replica'),
    'redis-server',
    redisArgs(replicaPort as number, join(root, 'replica'), ['--replicaof', '127.0.0.1', String(masterPort)]),
  );
  await master.start();
  await replica.start();
  const sentinels = await Promise.all(
    sentinelPorts.map(async (port, i) => {
      const dir = await folder(`sentinel${i + 1}`);
      const conf = join(dir, 'sentinel.conf');
      await writeFile(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${name} 127.0.0.1 ${masterPort} 2`,
          `sentinel down-after-milliseconds ${name} 1000`,
          `sentinel failover-timeout ${name} 5000`,
          `sentinel parallel-syncs ${name} 1`,
          '',
        ].join('\n'),
      );
      return managed('redis', port, dir, 'redis-server', [conf, '--sentinel']);
    }),
  );
  await Promise.all(sentinels.map((s) => s.start()));
  const set: RedisSentinelSet = {
    master,
    replica,
    sentinels,
    sentinelList: sentinels.map((s) => `127.0.0.1:${s.port}`).join(','),
    name,
    async currentMaster() {
      for (const s of sentinels) {
        const client = new Redis({
          port: s.port,
          host: '127.0.0.1',
          lazyConnect: true,
          retryStrategy: () => null,
        });
        try {
          await client.connect();
          const addr = (await client.call('SENTINEL', 'get-master-addr-by-name', name)) as string[] | null;
          if (addr) return `${addr[0]}:${addr[1]}`;
        } catch {
          // this sentinel is down: ask the next
        } finally {
          client.disconnect();
        }
      }
      throw new Error('no sentinel answered');
    },
    async close() {
      await Promise.all([...sentinels, replica, master].map((s) => s.stop()));
      await rm(root, { recursive: true, force: true });
    },
  };
  // Ready once the replica is in sync and every sentinel knows it.
  const replicaClient = new Redis({ port: replicaPort, host: '127.0.0.1' });
  try {
    await poll(
      'the replica in sync',
      async () => ((await replicaClient.info('replication')).includes('master_link_status:up') ? true : null),
      30_000,
    );
  } finally {
    replicaClient.disconnect();
  }
  await poll(
    'every sentinel to see the replica',
    async () => {
      for (const s of sentinels) {
        const client = new Redis({ port: s.port, host: '127.0.0.1' });
        try {
          const replicas = (await client.call('SENTINEL', 'replicas', name)) as unknown[];
          if (replicas.length < 1) return null;
        } finally {
          client.disconnect();
        }
      }
      return true;
    },
    30_000,
  );
  return set;
}
