import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  JobQueue,
  JobStore,
  closeRedis,
  connectNats,
  createRedis,
  downloadJobId,
  ensureJetStream,
  jobEventSchema,
  jobEventsFilter,
  type JobEvent,
  type JobRecord,
  type JobStatus,
  type NatsConnection,
  type Quality,
  type Redis,
} from '@media-jobs/libs';
import {
  startFixtureServer,
  startPlatform,
  waitUntil,
  type FixtureServer,
  type Platform,
} from '@media-jobs/libs/testing';

/** One test file's world: real servers, a fixture HTTP server, and clients to submit and watch jobs. */
export interface TestBed {
  readonly platform: Platform;
  readonly fixtures: FixtureServer;
  readonly nc: NatsConnection;
  readonly redis: Redis;
  readonly store: JobStore;
  /** Creates a download job as the gateway would and records its events from before it is queued. */
  submit(url: string, quality: Quality): Promise<SubmittedJob>;
  /** Polls the record until its status is one of `statuses`. */
  waitFor(id: string, statuses: JobStatus[], timeoutMs?: number): Promise<JobRecord>;
  /** Names left under DATA_DIR/<folder>. */
  files(folder: 'tmp' | 'downloads'): Promise<string[]>;
  close(): Promise<void>;
}

export interface SubmittedJob {
  readonly id: string;
  /** Every event of the job so far, in arrival order, each with its arrival time. */
  readonly events: (JobEvent & { received: number })[];
}

export async function startTestBed(): Promise<TestBed> {
  const platform = await startPlatform();
  const fixtures = await startFixtureServer();
  const config = platform.config();
  const nc = await connectNats(config, 'download-worker-test');
  await ensureJetStream(nc, config);
  const redis = createRedis(config);
  const store = new JobStore({ redis, ttlMs: config.cacheTtlMs });
  const queue = new JobQueue(nc);
  return {
    platform,
    fixtures,
    nc,
    redis,
    store,
    async submit(url, quality) {
      const id = downloadJobId(new URL(url), quality);
      const events: SubmittedJob['events'] = [];
      nc.subscribe(jobEventsFilter('download', id), {
        callback: (_err, msg) => {
          events.push({ ...jobEventSchema.parse(msg.json()), received: Date.now() });
        },
      });
      await nc.flush();
      const { job } = await store.claim('download', id, { url, quality });
      await queue.enqueue(job.record);
      return { id, events };
    },
    async waitFor(id, statuses, timeoutMs = 30_000) {
      const record = await waitUntil(
        `job ${id} to be ${statuses.join(' or ')}`,
        async () => (await store.get('download', id))?.record,
        { timeoutMs, intervalMs: 100, until: (r) => r !== undefined && statuses.includes(r.status) },
      );
      return record as JobRecord;
    },
    async files(folder) {
      return readdir(join(platform.dataDir, folder)).catch(() => []);
    },
    async close() {
      await fixtures.close();
      await nc.close();
      await closeRedis(redis);
      await platform.close();
    },
  };
}
