import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { JetStreamApiError, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, errors } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import {
  backendOutage,
  redisReplyCode,
  connectNats,
  createRedis,
  ensureJetStream,
  waitForRedis,
  type NatsConnection,
} from '@media-jobs/libs';
import {
  freePort,
  managed,
  startNats,
  startNatsCluster,
  startRedis,
  type TestServer,
} from '@media-jobs/libs/testing';

/**
 * Every outage the classifier knows, reproduced against real servers: the error objects are
 * the ones the clients really throw, so a library upgrade that changes them fails here.
 */

const servers: TestServer[] = [];
const clients: { disconnect(): void }[] = [];
const natsClients: NatsConnection[] = [];

afterAll(async () => {
  for (const c of clients) c.disconnect();
  for (const nc of natsClients) if (!nc.isClosed()) await nc.close();
  await Promise.all(servers.map((s) => s.close()));
});

/** A redis-server with extra arguments, on a free port with its own folder. */
async function redisWith(...args: string[]): Promise<TestServer> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'mj-redis-'));
  const base = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir];
  const server = managed('redis', port, dir, 'redis-server', [...base, ...args]);
  servers.push(server);
  await server.start();
  return server;
}

/** The client every service uses (offline queue off once ready, one retry per command). */
async function serviceClient(url: string): Promise<Redis> {
  const redis = createRedis({ redisUrl: url });
  redis.on('error', () => undefined);
  clients.push(redis);
  await waitForRedis(redis);
  return redis;
}

/** The rejection of a call, or a failure if it resolves. */
async function rejection(call: Promise<unknown>): Promise<unknown> {
  try {
    await call;
  } catch (err) {
    return err;
  }
  throw new Error('the call succeeded');
}

/** Repeats a command until it fails (a server state that comes a moment later), and returns the error. */
async function firstFailure(run: () => Promise<unknown>, timeout = 20_000): Promise<unknown> {
  let failure: unknown;
  await expect
    .poll(
      async () => {
        failure = await run().then(
          () => undefined,
          (err: unknown) => err,
        );
        return failure !== undefined;
      },
      { timeout, interval: 50 },
    )
    .toBe(true);
  return failure;
}

describe('backendOutage: Redis', () => {
  it('when Redis stops under a command in flight, then its MaxRetriesPerRequestError is an outage', async () => {
    const server = await startRedis();
    servers.push(server);
    const redis = await serviceClient(server.url);
    const inFlight = rejection(redis.blpop('nothing', 0));
    await server.stop();
    const err = await inFlight;
    expect(err).toMatchObject({ name: 'MaxRetriesPerRequestError' });
    expect(backendOutage(err, { redis })).toEqual({ backend: 'redis', reason: 'redis.max_retries' });
  });

  it('when a command is sent while Redis is away, then its plain error is an outage because the client is not ready, and the same error from a ready client is not', async () => {
    const server = await startRedis();
    servers.push(server);
    const redis = await serviceClient(server.url);
    await server.stop();
    await expect.poll(() => redis.status).not.toBe('ready');
    const err = await rejection(redis.get('x'));
    // ioredis gives a bare Error here: nothing but its text says what it is.
    expect((err as Error).constructor).toBe(Error);
    expect(backendOutage(err, { redis })).toEqual({ backend: 'redis', reason: 'redis.not_ready' });
    expect(backendOutage(err)).toBeNull();

    await server.start();
    await waitForRedis(redis);
    expect(backendOutage(err, { redis })).toBeNull();
    expect(await redis.get('x')).toBeNull();
  });

  it('when Redis has closed the socket and the client is still ready, then the plain error of a command sent then is an outage', async () => {
    const server = await startRedis();
    servers.push(server);
    const redis = await serviceClient(server.url);
    const id = await redis.client('ID');
    const admin = new Redis(server.url);
    try {
      // The server ends the connection; the socket ends its side a tick after its 'end', and
      // ioredis leaves `ready` only on the socket's 'close', later still. A command sent in
      // between (here: on the next turn of the event loop) fails on the ended socket.
      const sentOnEnd = new Promise<{ status: Redis['status']; writable: boolean; err: unknown }>(
        (resolve) => {
          redis.stream.once('end', () =>
            setImmediate(() => {
              // The client as the error handler sees it when the command fails.
              const { status } = redis;
              const { writable } = redis.stream;
              void rejection(redis.get('x')).then((err) => resolve({ status, writable, err }));
            }),
          );
        },
      );
      await admin.client('KILL', 'ID', String(id));
      const { status, writable, err } = await sentOnEnd;
      expect([status, writable]).toEqual(['ready', false]);
      expect((err as Error).constructor).toBe(Error);
      expect(backendOutage(err, { redis: { status, stream: { writable } } })).toEqual({
        backend: 'redis',
        reason: 'redis.not_ready',
      });
      expect(backendOutage(err, { redis: { status, stream: { writable: true } } })).toBeNull();
    } finally {
      admin.disconnect();
    }
  });

  it('when the client has quit, then "Connection is closed." is an outage by the client state', async () => {
    const server = await startRedis();
    servers.push(server);
    const redis = await serviceClient(server.url);
    await redis.quit();
    const err = await rejection(redis.get('x'));
    expect(redis.status).toBe('end');
    expect(backendOutage(err, { redis })).toEqual({ backend: 'redis', reason: 'redis.not_ready' });
  });

  it('when Redis never answered since start, then the queued command ends in an outage', async () => {
    const redis = createRedis({ redisUrl: `redis://127.0.0.1:${await freePort()}` });
    const refused: unknown[] = [];
    redis.on('error', (e: unknown) => refused.push(e));
    clients.push(redis);
    const err = await rejection(redis.get('x'));
    expect(backendOutage(err, { redis })?.reason).toBe('redis.max_retries');
    // What the client reports on its 'error' event meanwhile is a system error with a code.
    expect(refused[0]).toMatchObject({ code: 'ECONNREFUSED' });
    expect(backendOutage(refused[0])).toEqual({ backend: null, reason: 'system.econnrefused' });
  });

  it('when a replica is written to, then READONLY is an outage', async () => {
    const master = await startRedis();
    servers.push(master);
    const replica = await redisWith('--replicaof', '127.0.0.1', String(master.port));
    const redis = await serviceClient(replica.url);
    const err = await rejection(redis.set('x', '1'));
    expect(backendOutage(err, { redis })).toEqual({ backend: 'redis', reason: 'redis.reply_readonly' });
  });

  it('when a replica that serves no stale data loses its master, then MASTERDOWN is an outage', async () => {
    const master = await startRedis();
    servers.push(master);
    const replica = await redisWith(
      '--replicaof',
      '127.0.0.1',
      String(master.port),
      '--replica-serve-stale-data',
      'no',
    );
    const redis = await serviceClient(replica.url);
    await expect
      .poll(async () => (await redis.info('replication')).includes('master_link_status:up'), {
        timeout: 20_000,
      })
      .toBe(true);
    await master.stop();
    const err = await firstFailure(() => redis.get('x'));
    expect(backendOutage(err, { redis })).toEqual({ backend: 'redis', reason: 'redis.reply_masterdown' });
  });

  it('when a cluster node serves no slot, then CLUSTERDOWN is an outage', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mj-cluster-'));
    const node = await redisWith(
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      join(dir, 'nodes.conf'),
    );
    const redis = await serviceClient(node.url);
    const err = await rejection(redis.get('x'));
    expect(backendOutage(err, { redis })).toEqual({ backend: 'redis', reason: 'redis.reply_clusterdown' });
  });

  it('when Redis is still loading its data set, then LOADING is an outage', async () => {
    // Loading is slowed down (key-load-delay, microseconds per key) so it is seen for sure.
    const server = await redisWith(
      '--key-load-delay',
      '500',
      '--loading-process-events-interval-bytes',
      '1024',
    );
    const seed = new Redis(server.url);
    clients.push(seed);
    const pipeline = seed.pipeline();
    for (let i = 0; i < 5000; i++) pipeline.set(`k${i}`, 'v'.repeat(100));
    await pipeline.exec();
    await seed.save();
    seed.disconnect();
    await server.stop();
    await server.start();
    // The services' client waits through loading (ready check); one without it sees LOADING.
    const raw = new Redis(server.url, { enableReadyCheck: false, maxRetriesPerRequest: 1 });
    clients.push(raw);
    const err = await rejection(raw.get('k1'));
    expect(backendOutage(err, { redis: raw })).toEqual({ backend: 'redis', reason: 'redis.reply_loading' });
  });

  it('when a master lacks the replicas it must write to, then NOREPLICAS is an outage', async () => {
    const server = await redisWith('--min-replicas-to-write', '1');
    const redis = await serviceClient(server.url);
    const err = await rejection(redis.set('x', '1'));
    expect(backendOutage(err, { redis })).toEqual({ backend: 'redis', reason: 'redis.reply_noreplicas' });
  });

  it('when a script keeps Redis busy, then BUSY is an outage, and the killed script’s ERR is not', async () => {
    const server = await redisWith('--busy-reply-threshold', '50');
    const redis = await serviceClient(server.url);
    const other = await serviceClient(server.url);
    const looping = rejection(redis.eval('local i = 0 while true do i = i + 1 end', 0));
    const busy = await firstFailure(() => other.ping());
    expect(backendOutage(busy, { redis: other })).toEqual({ backend: 'redis', reason: 'redis.reply_busy' });
    await other.script('KILL');
    const killed = await looping;
    expect(backendOutage(killed, { redis })).toBeNull();
  });

  it('when Redis answers with an error about the command, then it is no outage', async () => {
    const server = await startRedis();
    servers.push(server);
    const redis = await serviceClient(server.url);
    await redis.set('s', 'text');
    const wrongType = await rejection(redis.lpush('s', 'x'));
    const noScript = await rejection(redis.evalsha('0'.repeat(40), 0));
    expect(redisReplyCode(noScript)).toBe('NOSCRIPT');
    for (const err of [wrongType, noScript, new TypeError('x is undefined'), new Error('boom')]) {
      expect(backendOutage(err, { redis })).toBeNull();
    }
  });
});

describe('backendOutage: NATS', () => {
  it('when nats-server stops, then requests, JetStream publishes and API calls time out or fail as outages', async () => {
    const server = await startNats();
    servers.push(server);
    const config = { natsServers: [server.url] };
    const nc = await connectNats(config, 'backend-errors-test');
    natsClients.push(nc);
    await ensureJetStream(nc, {
      cacheTtlMs: 3_600_000,
      jobAckWaitMs: 5000,
      jobMaxDeliver: 3,
      natsReplicas: 1,
    });
    const jsm = await jetstreamManager(nc, { timeout: 1000 });
    // While it is up, a missing stream is an answer, not an outage.
    expect(backendOutage(await rejection(jsm.streams.info('NOPE')))).toBeNull();

    await server.stop();
    const calls = {
      publish: () => jetstream(nc).publish('jobs.download', '{}', { timeout: 1000 }),
      request: () => nc.request('any.subject', '', { timeout: 1000 }),
      api: () => jsm.streams.info('JOBS'),
    };
    for (const [name, call] of Object.entries(calls)) {
      const err = await rejection(call());
      expect(backendOutage(err), name).toEqual({ backend: 'nats', reason: 'nats.timeout' });
    }
    const flush = await firstFailure(() => nc.flush());
    expect(backendOutage(flush)).toEqual({ backend: 'nats', reason: 'nats.request_failed' });
  });

  it('when the connection is closed, then every call fails with ClosedConnectionError, an outage', async () => {
    const server = await startNats();
    servers.push(server);
    const nc = await connect({ servers: server.url });
    await nc.close();
    const errs = [
      await rejection(Promise.resolve().then(() => nc.publish('a', ''))),
      await rejection(nc.request('a', '')),
      await rejection(jetstream(nc).publish('jobs.download', '')),
    ];
    for (const err of errs) expect(backendOutage(err)).toEqual({ backend: 'nats', reason: 'nats.closed' });
  });

  it('when the server has no JetStream, then JetStreamNotEnabled is an outage', async () => {
    const port = await freePort();
    const dir = await mkdtemp(join(tmpdir(), 'mj-nats-'));
    const plain = managed('nats', port, dir, 'nats-server', ['-a', '127.0.0.1', '-p', String(port)]);
    servers.push(plain);
    await plain.start();
    const nc = await connect({ servers: plain.url });
    natsClients.push(nc);
    const err = await rejection(jetstream(nc, { timeout: 1000 }).publish('jobs.download', ''));
    expect(backendOutage(err)).toEqual({ backend: 'nats', reason: 'nats.jetstream_not_enabled' });
  });

  it('when a JetStream cluster loses its quorum, then the API’s 503 (JetStreamApiError 10008) is an outage', async () => {
    const cluster = await startNatsCluster(3);
    try {
      await cluster.ready(30_000);
      const nc = await connect({ servers: cluster.nodes[0]!.url });
      natsClients.push(nc);
      const jsm = await jetstreamManager(nc, { timeout: 1000 });
      await Promise.all([cluster.nodes[1]!.stop(), cluster.nodes[2]!.stop()]);
      // The first answers time out (an outage too); once the node knows it is alone, it says 503.
      let apiError: unknown;
      await expect
        .poll(
          async () => {
            const err = await rejection(
              jsm.streams.add({ name: `S${Date.now()}`, subjects: [`s.${Date.now()}`] }),
            );
            expect(backendOutage(err)?.backend).toBe('nats');
            if (err instanceof JetStreamApiError) apiError = err;
            return apiError !== undefined;
          },
          { timeout: 40_000, interval: 200 },
        )
        .toBe(true);
      expect(apiError).toMatchObject({ status: 503, code: 10008 });
      expect(backendOutage(apiError)).toEqual({ backend: 'nats', reason: 'nats.jetstream_unavailable' });
    } finally {
      await cluster.close();
    }
  }, 90_000);

  it('when the first connect finds no server, then its error is an outage', async () => {
    const err = await rejection(connect({ servers: `nats://127.0.0.1:${await freePort()}`, timeout: 1000 }));
    expect(err).toBeInstanceOf(errors.ConnectionError);
    expect(backendOutage(err)).toEqual({ backend: 'nats', reason: 'nats.connection' });
  });
});
