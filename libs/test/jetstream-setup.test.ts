import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import {
  BUCKETS,
  JOBS_STREAM,
  closeContext,
  connectNats,
  createLogger,
  ensureJetStream,
  loadConfig,
  openContext,
  retryJetStreamSetup,
  type Config,
} from '@media-jobs/libs';
import {
  startNatsCluster,
  startRedis,
  tempDataDir,
  waitUntil,
  type NatsCluster,
  type TestServer,
} from '@media-jobs/libs/testing';

// A service that starts while JetStream cannot answer (a cluster with no meta leader: two of
// its three nodes down) waits for it instead of exiting, and comes up once the nodes return.
// Found by running docker-compose.yml's cluster profile: seven services starting at once on a
// fresh cluster timed out creating their streams, and one exited.

let cluster: NatsCluster;
let redis: TestServer;
let data: { dir: string; remove(): Promise<void> };
let config: Config;

beforeAll(async () => {
  [cluster, redis, data] = await Promise.all([startNatsCluster(3), startRedis(), tempDataDir()]);
  config = loadConfig({
    NATS_URL: cluster.urls,
    NATS_REPLICAS: '3',
    STORAGE: 'nats',
    REDIS_URL: redis.url,
    DATA_DIR: data.dir,
    LOG_LEVEL: 'warn',
  });
}, 120_000);

afterAll(async () => {
  await Promise.all([cluster?.close(), redis?.close()]);
  await data?.remove();
});

function capturedLogger(): { logger: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { logger: createLogger('setup-test', config, sink), lines };
}

describe('JetStream set-up at a service start', () => {
  it('when JetStream has no meta leader, then the set-up gives up after its budget with the outage, not at the first timeout', async () => {
    const [, second, third] = cluster.nodes;
    await Promise.all([second!.stop(), third!.stop()]);
    const nc = await connectNats(config, 'setup-test');
    try {
      const { logger, lines } = capturedLogger();
      const started = Date.now();
      const failed = await retryJetStreamSetup(
        'the test streams',
        () => ensureJetStream(nc, config),
        logger,
        8000,
      ).then(
        () => null,
        (err: unknown) => err,
      );
      expect(failed).toBeInstanceOf(Error);
      expect(Date.now() - started).toBeGreaterThanOrEqual(5000);
      expect(lines.some((l) => l.includes('JetStream not ready for the test streams'))).toBe(true);
    } finally {
      await nc.close();
      await Promise.all([second!.start(), third!.start()]);
      await cluster.ready(60_000);
    }
  }, 120_000);

  it('when a service starts with two of three nodes down, then it waits, and is up with R3 streams and buckets once they return', async () => {
    const [, second, third] = cluster.nodes;
    await Promise.all([second!.stop(), third!.stop()]);
    const { logger, lines } = capturedLogger();
    const opening = openContext('setup-test', config, logger);
    let opened = false;
    void opening.then(() => (opened = true)).catch(() => undefined);
    const t0 = Date.now();
    const dbg = setInterval(() => console.log('DBG', Date.now() - t0, opened, lines.slice(-3)), 3000);
    await waitUntil('the start to say it is waiting for JetStream', () =>
      lines.some((l) => l.includes('JetStream not ready')),
    ).finally(() => clearInterval(dbg));
    expect(opened).toBe(false);
    await Promise.all([second!.start(), third!.start()]);
    const ctx = await opening;
    try {
      const jsm = await jetstreamManager(ctx.nc);
      for (const stream of [JOBS_STREAM, ...BUCKETS.map((b) => `OBJ_${b}`)]) {
        expect((await jsm.streams.info(stream)).config.num_replicas, stream).toBe(3);
      }
    } finally {
      await closeContext(ctx);
    }
  }, 180_000);
});
