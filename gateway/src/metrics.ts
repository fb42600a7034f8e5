import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import {
  CONSUMERS,
  EVENTS_STREAM,
  EXPIRY_INDEX,
  JANITOR_SUBJECTS,
  JOBS_STREAM,
  JOB_EVENT_TYPES,
  JOB_KINDS,
  JOB_STATUSES,
  LAST_SWEEP_KEY,
  jobCompletedEvent,
  jobRecordSchema,
  janitorSweepEvent,
  natsConnected,
  parseJobKey,
  type JobKind,
  type JobStatus,
} from '@media-jobs/libs';
import type { GatewayDeps } from './deps.js';
import { storageUsage, type FolderUsage } from './disk-usage.js';
import { Refreshing, within } from './refreshing.js';

export interface MetricsOptions {
  /** Longest one backend may take to answer a scrape; past it the backend counts as down. */
  sourceTimeoutMs: number;
  /** Most job records read to count jobs by status (the newest by expiry). */
  jobCountLimit: number;
  /** Job counts are reused this long, so frequent scrapes read Redis once. */
  jobCountMaxAgeMs: number;
  /** Disk usage is rescanned at most this often. */
  diskMaxAgeMs: number;
}

export const DEFAULT_METRICS_OPTIONS: MetricsOptions = {
  sourceTimeoutMs: 1500,
  jobCountLimit: 5000,
  jobCountMaxAgeMs: 10_000,
  diskMaxAgeMs: 30_000,
};

const P = 'media_jobs_';
const DURATION_BUCKETS = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
const KINDS = new Set<string>(JOB_KINDS);
const EVENT_TYPES = new Set<string>(JOB_EVENT_TYPES);

type JobCounts = { byKind: Record<JobKind, Record<JobStatus, number>>; counted: number };

/**
 * The Prometheus metrics of the gateway. Counters and the duration histogram follow the NATS
 * events this gateway sees (every replica sees all of them: aggregate with max, not sum);
 * gauges are read from Redis, JetStream and DATA_DIR at scrape time, each bounded in time, so
 * a backend that is down shows as `media_jobs_backend_up 0` instead of failing the scrape.
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly options: MetricsOptions;
  private jsm: Promise<JetStreamManager> | null = null;
  private readonly jobCounts: Refreshing<JobCounts>;
  private readonly disk: Refreshing<Record<string, FolderUsage>>;

  private readonly up = this.gauge('backend_up', 'Whether a backend answered this scrape (1) or not (0)', [
    'backend',
  ]);
  private readonly jobs = this.gauge(
    'jobs',
    'Live jobs by kind and status, from the newest records (see jobs_counted)',
    ['kind', 'status'],
  );
  private readonly jobsCounted = this.gauge(
    'jobs_counted',
    'Records read for media_jobs_jobs; below jobs_indexed{state="live"} the counts are partial',
  );
  private readonly jobsIndexed = this.gauge(
    'jobs_indexed',
    'Entries of the jobs:expiry index: live, or expired and awaiting the sweep',
    ['state'],
  );
  private readonly cache = new Counter({
    name: `${P}cache_requests_total`,
    help: 'Submissions answered from an existing job (hit) or by a new one (miss), all gateways, from Redis',
    labelNames: ['kind', 'result'],
    registers: [this.registry],
  });
  private readonly queue = this.gauge(
    'queue_messages',
    'JetStream worker consumer state: pending, ack_pending, redelivered, waiting',
    ['consumer', 'state'],
  );
  private readonly stream = this.gauge('stream_messages', 'Messages stored in a JetStream stream', [
    'stream',
  ]);
  private readonly streamBytes = this.gauge('stream_bytes', 'Bytes stored in a JetStream stream', ['stream']);
  private readonly diskBytes = this.gauge('disk_bytes', 'Bytes of the files under a DATA_DIR folder', [
    'folder',
  ]);
  private readonly diskFiles = this.gauge('disk_files', 'Files under a DATA_DIR folder', ['folder']);
  private readonly diskAge = this.gauge(
    'disk_scan_age_seconds',
    'Age of the disk figures (they are rescanned at most every few seconds)',
  );
  private readonly lastSweep = this.gauge(
    'sweep_last',
    'The last janitor sweep: timestamp_seconds, duration_seconds, files_removed, bytes_freed',
    ['field'],
  );
  private readonly lastSweepRemoved = this.gauge(
    'sweep_last_removed',
    'Jobs the last sweep removed, by kind (orphan: files of no job)',
    ['kind'],
  );
  private readonly sweeps = new Counter({
    name: `${P}sweeps_total`,
    help: 'Janitor sweeps seen on events.janitor.sweep',
    registers: [this.registry],
  });
  private readonly sweepRemoved = new Counter({
    name: `${P}sweep_removed_total`,
    help: 'Jobs removed by the sweeps seen on events.janitor.sweep, by kind',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  private readonly sweepBytes = new Counter({
    name: `${P}sweep_bytes_freed_total`,
    help: 'Bytes freed by the sweeps seen',
    registers: [this.registry],
  });
  private readonly events = new Counter({
    name: `${P}job_events_total`,
    help: 'Job events seen on events.job.>, by kind and type',
    labelNames: ['kind', 'type'],
    registers: [this.registry],
  });
  private readonly durations = new Histogram({
    name: `${P}job_duration_seconds`,
    help: 'Run time of completed jobs (duration_ms of completed events), by kind',
    labelNames: ['kind'],
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  private readonly scrapeDuration = this.gauge(
    'scrape_duration_seconds',
    'Time the last scrape took to gather its figures',
  );

  constructor(
    private readonly deps: Pick<GatewayDeps, 'nc' | 'redis' | 'store' | 'storage' | 'files'>,
    options: Partial<MetricsOptions> = {},
  ) {
    this.options = { ...DEFAULT_METRICS_OPTIONS, ...options };
    collectDefaultMetrics({ register: this.registry });
    this.jobCounts = new Refreshing(() => this.countJobs(), this.options.jobCountMaxAgeMs);
    this.disk = new Refreshing(() => this.diskUsage(), this.options.diskMaxAgeMs);
    this.subscribe();
  }

  private gauge(name: string, help: string, labelNames: string[] = []): Gauge {
    return new Gauge({ name: `${P}${name}`, help, labelNames, registers: [this.registry] });
  }

  /** Core subscriptions: they come back by themselves after a NATS reconnect and end with the connection. */
  private subscribe(): void {
    this.deps.nc.subscribe('events.job.*.*.*', {
      callback: (err, msg) => {
        if (err) return;
        const [, , kind, , type] = msg.subject.split('.');
        if (!kind || !type || !KINDS.has(kind) || !EVENT_TYPES.has(type)) return;
        this.events.inc({ kind, type });
        if (type !== 'completed') return;
        const event = jobCompletedEvent.safeParse(safeJson(msg.string()));
        if (event.success) this.durations.observe({ kind }, event.data.duration_ms / 1000);
      },
    });
    this.deps.nc.subscribe(JANITOR_SUBJECTS.sweep, {
      callback: (err, msg) => {
        if (err) return;
        const event = janitorSweepEvent.safeParse(safeJson(msg.string()));
        if (!event.success) return;
        this.sweeps.inc();
        for (const [kind, n] of Object.entries(event.data.removed)) this.sweepRemoved.inc({ kind }, n);
        this.sweepBytes.inc(event.data.bytes_freed);
      },
    });
  }

  /** Gathers every figure (each source in parallel, each bounded) and renders the text format. */
  async scrape(): Promise<string> {
    const started = Date.now();
    const t = this.options.sourceTimeoutMs;
    const results = await Promise.allSettled([
      within(this.readRedis(), t),
      within(this.readJetStream(), t),
      // While disconnected, flush() would wait for the reconnect: answer at once instead.
      natsConnected(this.deps.nc)
        ? within(this.deps.nc.flush(), t)
        : Promise.reject(new Error('not connected')),
      within(access(this.deps.storage.tmp, constants.W_OK), t),
      this.readJobCounts(t),
      this.readDisk(t),
    ]);
    const [redis, jetstream, nats, dataDir] = results.map((r) => (r.status === 'fulfilled' ? 1 : 0));
    this.up.set({ backend: 'redis' }, redis ?? 0);
    this.up.set({ backend: 'jetstream' }, jetstream ?? 0);
    this.up.set({ backend: 'nats' }, nats ?? 0);
    this.up.set({ backend: 'data_dir' }, dataDir ?? 0);
    this.scrapeDuration.set((Date.now() - started) / 1000);
    return this.registry.metrics();
  }

  /** Cache counters, index sizes and the last sweep: a few cheap reads every scrape. */
  private async readRedis(): Promise<void> {
    const now = Date.now();
    const [cache, live, expired, sweep] = await Promise.all([
      this.deps.store.cacheStats(),
      this.deps.redis.zcount(EXPIRY_INDEX, `(${now}`, '+inf'),
      this.deps.redis.zcount(EXPIRY_INDEX, '-inf', now),
      this.deps.redis.get(LAST_SWEEP_KEY),
    ]);
    // The totals live in Redis (shared by every gateway): the counter shows them as they are.
    this.cache.reset();
    for (const kind of JOB_KINDS) {
      this.cache.inc({ kind, result: 'hit' }, cache[kind].hits);
      this.cache.inc({ kind, result: 'miss' }, cache[kind].misses);
    }
    this.jobsIndexed.set({ state: 'live' }, live);
    this.jobsIndexed.set({ state: 'awaiting_sweep' }, expired);
    this.setLastSweep(sweep);
  }

  /** Job counts from the cached count; while Redis is away the last counts stay (backend_up says so). */
  private async readJobCounts(waitMs: number): Promise<void> {
    const counts = await this.jobCounts.get(waitMs);
    if (!counts) return;
    for (const kind of JOB_KINDS)
      for (const status of JOB_STATUSES) this.jobs.set({ kind, status }, counts.byKind[kind][status]);
    this.jobsCounted.set(counts.counted);
  }

  private setLastSweep(raw: string | null): void {
    const summary = raw ? (safeJson(raw) as Record<string, unknown> | null) : null;
    if (!summary || typeof summary !== 'object') return;
    const at = Date.parse(String(summary['started_at'] ?? ''));
    const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
    if (Number.isFinite(at)) this.lastSweep.set({ field: 'timestamp_seconds' }, at / 1000);
    this.lastSweep.set({ field: 'duration_seconds' }, num(summary['duration_ms']) / 1000);
    this.lastSweep.set({ field: 'files_removed' }, num(summary['files_removed']));
    this.lastSweep.set({ field: 'bytes_freed' }, num(summary['bytes_freed']));
    const removed = (summary['removed'] ?? {}) as Record<string, unknown>;
    for (const kind of ['download', 'normalize', 'orphan'])
      this.lastSweepRemoved.set({ kind }, num(removed[kind]));
  }

  /**
   * Live jobs by kind and status from at most `jobCountLimit` records, newest expiry first
   * (new and recently finished jobs), read in batches. Scanning every record per scrape
   * would cost O(jobs); `jobs_counted` against `jobs_indexed` says when the counts are partial.
   */
  private async countJobs(): Promise<JobCounts> {
    const byKind = Object.fromEntries(
      JOB_KINDS.map((k) => [k, Object.fromEntries(JOB_STATUSES.map((s) => [s, 0]))]),
    ) as JobCounts['byKind'];
    const now = Date.now();
    let counted = 0;
    for (let offset = 0; offset < this.options.jobCountLimit; offset += 1000) {
      const size = Math.min(1000, this.options.jobCountLimit - offset);
      const keys = await this.deps.redis.zrevrangebyscore(
        EXPIRY_INDEX,
        '+inf',
        `(${now}`,
        'LIMIT',
        offset,
        size,
      );
      if (keys.length === 0) break;
      const raws = await this.deps.redis.mget(...keys);
      raws.forEach((raw, i) => {
        const kind = parseJobKey(keys[i] as string)?.kind;
        const parsed = raw && kind ? jobRecordSchema.safeParse(safeJson(raw)) : null;
        if (!kind || !parsed?.success) return;
        byKind[kind][parsed.data.status] += 1;
        counted += 1;
      });
      if (keys.length < size) break;
    }
    return { byKind, counted };
  }

  /** Consumer state of both workers and the size of both streams. */
  private async readJetStream(): Promise<void> {
    if (!natsConnected(this.deps.nc)) throw new Error('NATS not connected');
    this.jsm ??= jetstreamManager(this.deps.nc, { timeout: this.options.sourceTimeoutMs });
    let jsm;
    try {
      jsm = await this.jsm;
    } catch (err) {
      this.jsm = null; // try again on the next scrape
      throw err;
    }
    const [consumers, streams] = await Promise.all([
      Promise.all(JOB_KINDS.map((kind) => jsm.consumers.info(JOBS_STREAM, CONSUMERS[kind]))),
      Promise.all([JOBS_STREAM, EVENTS_STREAM].map((name) => jsm.streams.info(name))),
    ]);
    for (const info of consumers) {
      const consumer = info.name;
      this.queue.set({ consumer, state: 'pending' }, info.num_pending);
      this.queue.set({ consumer, state: 'ack_pending' }, info.num_ack_pending);
      this.queue.set({ consumer, state: 'redelivered' }, info.num_redelivered);
      this.queue.set({ consumer, state: 'waiting' }, info.num_waiting);
    }
    for (const info of streams) {
      this.stream.set({ stream: info.config.name }, info.state.messages);
      this.streamBytes.set({ stream: info.config.name }, info.state.bytes);
    }
  }

  /** Disk figures from the cached scan; never fails the scrape. */
  private async readDisk(waitMs: number): Promise<void> {
    const usage = await this.disk.get(waitMs);
    if (!usage) return;
    for (const [folder, { files, bytes }] of Object.entries(usage)) {
      this.diskBytes.set({ folder }, bytes);
      this.diskFiles.set({ folder }, files);
    }
    this.diskAge.set(this.disk.ageSeconds() ?? 0);
  }

  private diskUsage(): Promise<Record<string, FolderUsage>> {
    return storageUsage(this.deps.files, this.deps.storage);
  }
}

function safeJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return null;
  }
}
