import { rm } from 'node:fs/promises';
import {
  jetstream,
  jetstreamManager,
  type Consumer,
  type ConsumerMessages,
  type JsMsg,
} from '@nats-io/jetstream';
import type { Subscription } from '@nats-io/transport-node';
import { isBackendOutage } from './backend-errors.js';
import { AppError, errorMessage } from './errors.js';
import { jobRequestMessage } from './events.js';
import type { JobEventBody } from './events-publisher.js';
import type { JobKind, JobRecord } from './job-record.js';
import type { StoredJob } from './job-store.js';
import { makeWorkDir } from './storage.js';
import { discardStaleOutput } from './job-deletion.js';
import type { ServiceContext } from './service.js';
import { CONSUMERS, JOBS_STREAM } from './subjects.js';

/** Tries at handling one max-deliveries advisory: 1 + 2 + 4 + 8 + 16 + 30 + 30 s of waiting between them. */
const ADVISORY_ATTEMPTS = 8;

/** What a job handler gets for one run of one job. */
export interface JobRun {
  readonly job: JobRecord;
  /** 1 on the first delivery. */
  readonly attempt: number;
  /** Aborted on timeout, on shutdown, and when the job is deleted meanwhile. */
  readonly signal: AbortSignal;
  /** A private folder under DATA_DIR/tmp, removed after the run whatever happens. */
  readonly workDir: string;
  /** Reports progress (0-100); written to the record and published at most a few times a second. */
  progress(percent: number, stage?: string): void;
}

export interface JobOutput {
  /** What the user sees in the record's `result`. */
  result: Record<string, unknown>;
  /** `storedPath`s of what the handler put in place; removed again if the job vanished meanwhile. */
  files: string[];
}

export type JobHandler = (run: JobRun) => Promise<JobOutput>;

export interface JobRunnerOptions {
  kind: JobKind;
  handler: JobHandler;
  concurrency: number;
  /** Whole-run limit; the run is aborted and fails with `<kind>.timeout`. */
  timeoutMs: number;
  /** The error a run that outlasts `timeoutMs` fails with (default `<kind>.timeout`). */
  timeoutError?: (timeoutMs: number) => AppError;
  /** Minimum time between progress writes. */
  progressIntervalMs?: number;
}

/**
 * The run was aborted for this reason; decides between hand-back (shutdown, or heartbeats
 * that no longer reach Redis), drop and failure.
 */
type AbortReason = 'shutdown' | 'deleted' | 'timeout' | 'lease_lost';

const abortReason = (signal: AbortSignal): AbortReason | null =>
  signal.aborted ? ((signal.reason as AbortReason | undefined) ?? 'shutdown') : null;

/**
 * Consumes one worker's JetStream consumer with at most `concurrency` jobs in flight, and
 * takes every job through processing → completed | failed exactly once per generation:
 * - a run starts only after a compare-and-set from `queued` (or from a `processing` whose
 *   worker is gone: a redelivery, or a record not touched for one ack wait);
 * - long runs call `working()` so JetStream does not deliver them twice;
 * - retryable errors are handed back with a growing delay until `max_deliver`, then the job
 *   ends `failed` with the reason; other errors fail it at once;
 * - a job deleted meanwhile is aborted and its output removed.
 */
export class JobRunner {
  private readonly inFlight = new Map<string, { controller: AbortController; done: Promise<void> }>();
  private stopping = false;
  private loop: Promise<void> | undefined;
  private current: ConsumerMessages | undefined;
  private slotFreed: (() => void) | undefined;
  private advisories: Subscription | undefined;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly options: JobRunnerOptions,
  ) {}

  get active(): number {
    return this.inFlight.size;
  }

  async start(): Promise<void> {
    const consumer = await jetstream(this.ctx.nc).consumers.get(JOBS_STREAM, CONSUMERS[this.options.kind]);
    this.watchMaxDeliveries();
    this.loop = this.pull(consumer);
  }

  /**
   * A job whose worker died on its last allowed delivery is never delivered again; JetStream
   * says so in a max-deliveries advisory. One worker of the group (queue subscription) marks
   * the job failed with the reason and removes the spent request, so no job stays `processing`.
   */
  private watchMaxDeliveries(): void {
    const consumerName = CONSUMERS[this.options.kind];
    const subject = `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${JOBS_STREAM}.${consumerName}`;
    this.advisories = this.ctx.nc.subscribe(subject, {
      queue: `${consumerName}-advisories`,
      callback: (err, msg) => {
        if (err) return;
        const advisory = safeJson(msg.data) as { stream_seq?: number; deliveries?: number } | null;
        if (typeof advisory?.stream_seq !== 'number') return;
        void this.giveUpWithRetries(
          advisory.stream_seq,
          advisory.deliveries ?? this.ctx.config.jobMaxDeliver,
        );
      },
    });
  }

  /**
   * An advisory comes once and is not stored: if Redis or JetStream is away when it arrives,
   * keep trying (about a minute and a half in all) rather than leave the job `processing`.
   */
  private async giveUpWithRetries(seq: number, deliveries: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.giveUp(seq, deliveries);
        return;
      } catch (e) {
        const last = attempt >= ADVISORY_ATTEMPTS || this.stopping;
        this.ctx.logger[last ? 'error' : 'warn'](
          { err: errorMessage(e), stream_seq: seq, attempt },
          last
            ? 'Cannot handle a max-deliveries advisory; the job keeps its state until it expires'
            : 'Cannot handle a max-deliveries advisory yet; retrying',
        );
        if (last) return;
        await new Promise((r) => setTimeout(r, Math.min(30_000, 500 * 2 ** attempt)));
      }
    }
  }

  private async giveUp(seq: number, deliveries: number): Promise<void> {
    const jsm = await jetstreamManager(this.ctx.nc);
    // null when the message is gone already (another handler finished it); errors are retried.
    const stored = await jsm.streams.getMessage(JOBS_STREAM, { seq });
    const parsed = stored ? jobRequestMessage.safeParse(safeJson(stored.data)) : null;
    if (parsed?.success) {
      const { job_id: id, created_at: createdAt } = parsed.data;
      const job = await this.ctx.store.get(this.options.kind, id);
      if (
        job &&
        job.record.created_at === createdAt &&
        (job.record.status === 'processing' || job.record.status === 'queued')
      ) {
        const error = {
          code: `${this.options.kind}.max_deliveries`,
          message: `gave up after ${deliveries} deliveries: the worker stopped or timed out each time`,
        };
        if (await this.ctx.store.update(job, { status: 'failed', error })) {
          this.ctx.events.job(this.options.kind, id, 'failed', { error, attempts: job.record.attempts });
          this.ctx.logger.warn({ job_id: id, deliveries }, 'Job failed: maximum deliveries reached');
        }
      }
    }
    await jsm.streams.deleteMessage(JOBS_STREAM, seq, false).catch(() => false);
  }

  private async pull(consumer: Consumer): Promise<void> {
    while (!this.stopping) {
      const free = this.options.concurrency - this.inFlight.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
        continue;
      }
      try {
        this.current = await consumer.fetch({ max_messages: free, expires: 5000 });
        for await (const msg of this.current) {
          if (this.stopping) {
            msg.nak();
            continue;
          }
          this.dispatch(msg);
        }
      } catch (err) {
        if (this.stopping) break;
        this.ctx.logger.warn({ err: errorMessage(err) }, 'Cannot fetch jobs; retrying');
        await new Promise((r) => setTimeout(r, 1000));
      } finally {
        this.current = undefined;
      }
    }
  }

  private dispatch(msg: JsMsg): void {
    const controller = new AbortController();
    const key = `${msg.info.streamSequence}`;
    const done = this.handle(msg, controller)
      .catch((err: unknown) => this.ctx.logger.error({ err }, 'Job handling failed unexpectedly'))
      .finally(() => {
        this.inFlight.delete(key);
        this.slotFreed?.();
        this.slotFreed = undefined;
      });
    this.inFlight.set(key, { controller, done });
  }

  /**
   * Stops pulling, lets in-flight jobs finish for up to `graceMs`, then aborts the rest and
   * hands them back to JetStream for another worker. Safe to call twice.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.advisories?.unsubscribe();
    this.slotFreed?.();
    this.current?.stop();
    const all = () => Promise.all([...this.inFlight.values()].map((f) => f.done));
    const timer = setTimeout(() => {
      for (const f of this.inFlight.values()) f.controller.abort('shutdown');
    }, graceMs);
    await all();
    clearTimeout(timer);
    await this.loop;
  }

  private async handle(msg: JsMsg, controller: AbortController): Promise<void> {
    const { logger, store } = this.ctx;
    const parsed = jobRequestMessage.safeParse(safeJson(msg.data));
    if (!parsed.success || parsed.data.kind !== this.options.kind) {
      logger.warn({ subject: msg.subject }, 'Dropping a malformed job request');
      msg.term();
      return;
    }
    const request = parsed.data;
    // Redis away: the request waits instead of being dropped or run blind.
    const read = await this.withStore(msg, request.job_id, 'Cannot read the job record', async () => {
      const stored = await store.get(this.options.kind, request.job_id);
      return stored ? await this.begin(stored, request.created_at, msg) : null;
    });
    if (!read) return;
    const claimed = read.value;
    if (!claimed) {
      msg.ack();
      return;
    }
    await this.execute(claimed, msg, controller);
  }

  /**
   * Runs a store step, and while Redis is away waits for it with the request held
   * (`working()`), instead of putting the request back: every nak spends one of its
   * `max_deliver` deliveries, so an outage longer than a few retry delays (a Sentinel failover
   * on a loaded machine) would end jobs that never failed. Null when the step did not happen:
   * the runner is stopping, or the error is no outage (then no state changed and the request is
   * delayed for one retry delay, as for any error the next delivery may not meet).
   */
  private async withStore<T>(
    msg: JsMsg,
    id: string,
    line: string,
    step: () => Promise<T>,
  ): Promise<{ value: T } | null> {
    const { config, logger, redis } = this.ctx;
    let waiting = false;
    for (;;) {
      try {
        const value = await step();
        if (waiting) logger.info({ job_id: id }, `${line}: Redis answers again`);
        return { value };
      } catch (err) {
        const outage = isBackendOutage(err, { redis });
        if (!outage || this.stopping) {
          msg.nak(config.jobRetryDelayMs);
          logger.warn({ job_id: id, err: errorMessage(err) }, `${line}; the request is delayed`);
          return null;
        }
        if (!waiting) logger.warn({ job_id: id, err: errorMessage(err) }, `${line}; waiting for Redis`);
        waiting = true;
        msg.working();
        await new Promise((r) => setTimeout(r, Math.min(config.jobRetryDelayMs, this.heartbeatMs)));
      }
    }
  }

  /**
   * Moves the record to `processing` unless another live worker has it, or it is done, gone
   * or newer. A redelivery means the last holder stopped (it no longer calls `working()`, or
   * handed the job back), so it takes the job over; should that holder still run, its next
   * progress write fails the compare-and-set and aborts it. A first delivery of a job already
   * `processing` is a duplicate request: it is dropped while the job's heartbeat is recent.
   */
  private async begin(stored: StoredJob, createdAt: string, msg: JsMsg): Promise<StoredJob | null> {
    const { record } = stored;
    if (record.created_at !== createdAt) return null;
    if (record.status === 'completed' || record.status === 'failed') return null;
    if (record.status === 'processing' && msg.info.deliveryCount === 1) {
      const sinceAlive =
        (await this.ctx.store.sinceAlive(stored.key)) ?? Date.now() - Date.parse(record.updated_at);
      if (sinceAlive < this.ctx.config.jobAckWaitMs) return null;
    }
    const next = await this.ctx.store.update(stored, {
      status: 'processing',
      progress: 0,
      attempts: record.attempts + 1,
      error: undefined,
    });
    if (next) {
      this.ctx.events.job(record.kind, record.id, 'started', { attempt: next.record.attempts });
      this.ctx.logger.info({ job_id: record.id, attempt: next.record.attempts }, 'Job started');
    }
    return next;
  }

  /** How often a running job tells JetStream (`working()`) and Redis (the active index) it is alive. */
  private get heartbeatMs(): number {
    return Math.max(500, Math.min(10_000, this.ctx.config.jobAckWaitMs / 3));
  }

  private async execute(claimed: StoredJob, msg: JsMsg, controller: AbortController): Promise<void> {
    const { events, logger, storage } = this.ctx;
    const { kind } = this.options;
    const id = claimed.record.id;
    const started = Date.now();
    const progress = new ProgressWriter(this.ctx, claimed, this.options.progressIntervalMs ?? 250, () =>
      controller.abort('deleted'),
    );
    let heartbeat: NodeJS.Timeout | undefined;
    let timeout: NodeJS.Timeout | undefined;
    let workDir: string | undefined;
    let output: JobOutput | undefined;
    let failure: unknown;
    try {
      workDir = await makeWorkDir(storage, id);
      // Only once the work has started, and stopped in `finally` whatever happens.
      heartbeat = this.startHeartbeat(msg, claimed.key, controller);
      timeout = setTimeout(() => controller.abort('timeout'), this.options.timeoutMs);
      output = await this.options.handler({
        job: claimed.record,
        attempt: claimed.record.attempts,
        signal: controller.signal,
        workDir,
        progress: (p, stage) => progress.report(p, stage),
      });
    } catch (err) {
      failure = err;
    } finally {
      clearInterval(heartbeat);
      clearTimeout(timeout);
      if (workDir) await rm(workDir, { recursive: true, force: true }).catch(() => undefined);
    }
    const latest = await progress.settle();
    const reason = abortReason(controller.signal);

    if (output && !reason && latest) {
      // While Redis is away the record still says processing and the request is held; should
      // the runner stop meanwhile, the request goes back (the output stays in place; the next
      // run replaces it).
      const written = await this.withStore(msg, id, 'Cannot record the completed job', () =>
        this.ctx.store.update(latest, {
          status: 'completed',
          progress: 100,
          result: output.result,
          error: undefined,
          expires_at: this.ctx.store.expiresFromNow(),
        }),
      );
      if (!written) return;
      const done = written.value;
      if (done) {
        msg.ack();
        const durationMs = Date.now() - started;
        events.job(kind, id, 'completed', { result: output.result, duration_ms: durationMs });
        logger.info({ job_id: id, duration_ms: durationMs }, 'Job completed');
        return;
      }
    }
    if (output) await this.discardOutput(output, kind, id);
    if (!latest || reason === 'deleted') {
      logger.info({ job_id: id }, 'Job deleted or replaced while running; dropped');
      msg.ack();
      return;
    }
    if (reason === 'shutdown' || reason === 'lease_lost') {
      const queued = await this.ctx.store.update(latest, { status: 'queued', progress: 0 }).catch(() => null);
      msg.nak();
      if (queued) this.publishRequeued(queued, { reason: 'handed_back' });
      logger.info({ job_id: id }, 'Job handed back for another worker');
      return;
    }
    await this.fail(
      latest,
      msg,
      reason === 'timeout'
        ? (this.options.timeoutError?.(this.options.timeoutMs) ?? timeoutError(kind, this.options.timeoutMs))
        : failure,
    );
  }

  /**
   * Removes the output of a run whose job was deleted or replaced meanwhile, under the key's
   * tombstone (see `discardStaleOutput`): a newer job with the same id keeps its files.
   */
  private async discardOutput(output: JobOutput, kind: JobKind, id: string): Promise<void> {
    const outcome = await discardStaleOutput(this.ctx.redis, kind, id, output.files, this.ctx.files);
    this.ctx.logger.debug({ job_id: id, outcome }, 'Output of a replaced run handled');
  }

  /** A job back in the queue is a transition too: subscribers see `queued` again, with why. */
  private publishRequeued(
    job: StoredJob,
    details: Omit<JobEventBody<'queued'>, 'request' | 'expires_at'>,
  ): void {
    const { request, expires_at } = job.record;
    this.ctx.events.job(this.options.kind, job.record.id, 'queued', { request, expires_at, ...details });
  }

  private async fail(latest: StoredJob, msg: JsMsg, err: unknown): Promise<void> {
    const { config, events, logger, store } = this.ctx;
    const appError =
      err instanceof AppError
        ? err
        : new AppError(`${this.options.kind}.internal`, errorMessage(err), { retryable: true, cause: err });
    const attempt = msg.info.deliveryCount;
    if (appError.retryable && attempt < config.jobMaxDeliver) {
      const delay = config.jobRetryDelayMs * 2 ** (attempt - 1);
      const error = appError.toJSON();
      const queued = await store.update(latest, { status: 'queued', progress: 0, error }).catch(() => null);
      msg.nak(delay);
      if (queued) this.publishRequeued(queued, { reason: 'retry', attempt, retry_in_ms: delay, error });
      logger.warn(
        { job_id: latest.record.id, attempt, delay_ms: delay, err: appError.message },
        'Job failed; retrying',
      );
      return;
    }
    const error = { code: appError.code, message: appError.message };
    // The record must say `failed` before the request is gone and anyone is told: while Redis
    // is away the request is held (or, should the runner stop, the next delivery ends it).
    const written = await this.withStore(msg, latest.record.id, 'Cannot record the failed job', () =>
      store.update(latest, { status: 'failed', error }),
    );
    if (!written) return;
    const failed = written.value;
    msg.term();
    if (!failed) {
      logger.info({ job_id: latest.record.id }, 'Job deleted or replaced while failing; dropped');
      return;
    }
    events.job(latest.record.kind, latest.record.id, 'failed', { error, attempts: latest.record.attempts });
    logger.warn({ job_id: latest.record.id, attempt, code: error.code, err: error.message }, 'Job failed');
  }

  /**
   * Every `heartbeatMs`: `working()` so JetStream does not deliver the job again, and a stamp
   * in the active index so the reconciler and other workers know it runs. A run whose stamps
   * have not reached Redis for one ack wait is aborted and handed back: by then the
   * reconciler may be about to queue it again (after two ack waits of silence), and a job
   * must never run twice at once.
   */
  private startHeartbeat(msg: JsMsg, key: string, controller: AbortController): NodeJS.Timeout {
    let lastStamp = Date.now();
    return setInterval(() => {
      msg.working();
      if (Date.now() - lastStamp > this.ctx.config.jobAckWaitMs) {
        this.ctx.logger.warn({ key }, 'Heartbeats cannot reach Redis; handing the job back');
        controller.abort('lease_lost');
        return;
      }
      this.ctx.store.heartbeat([key]).then(
        () => (lastStamp = Date.now()),
        (err: unknown) => this.ctx.logger.debug({ err: errorMessage(err) }, 'Heartbeat write failed'),
      );
    }, this.heartbeatMs);
  }
}

function timeoutError(kind: JobKind, timeoutMs: number): AppError {
  return new AppError(
    `${kind}.timeout`,
    `the job took longer than the ${Math.round(timeoutMs / 1000)} s limit`,
  );
}

/** The JSON value of a message body or stored string, or null when it is not JSON. */
export function safeJson(data: Uint8Array | string): unknown {
  try {
    return JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
  } catch {
    return null;
  }
}

/**
 * Writes progress to the record (compare-and-set, one write at a time) and publishes
 * `progress` events, at most once per interval. Calls `onGone` when the record vanished.
 */
class ProgressWriter {
  private last = 0;
  private lastPercent = -1;
  private chain: Promise<void> = Promise.resolve();
  private pending: { percent: number; stage?: string } | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ctx: ServiceContext,
    private stored: StoredJob | null,
    private readonly intervalMs: number,
    private readonly onGone: () => void,
  ) {}

  report(percent: number, stage?: string): void {
    const p = Math.max(0, Math.min(99, Math.round(percent * 10) / 10));
    if (p === this.lastPercent && !stage) return;
    // A report without a stage keeps the stage of the one it replaces, so no stage is lost.
    const kept = stage ?? this.pending?.stage;
    this.pending = kept === undefined ? { percent: p } : { percent: p, stage: kept };
    const wait = this.last + this.intervalMs - Date.now();
    if (wait <= 0) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), wait);
  }

  private flush(): void {
    this.timer = undefined;
    const next = this.pending;
    this.pending = undefined;
    if (!next || !this.stored) return;
    this.last = Date.now();
    this.lastPercent = next.percent;
    const { kind, id } = this.stored.record;
    this.ctx.events.job(
      kind,
      id,
      'progress',
      next.stage === undefined ? { progress: next.percent } : { progress: next.percent, stage: next.stage },
    );
    this.chain = this.chain.then(async () => {
      if (!this.stored) return;
      try {
        const updated = await this.ctx.store.update(this.stored, { progress: next.percent });
        if (!updated) this.onGone();
        this.stored = updated;
      } catch (err) {
        // Redis away for a moment: the next progress write or the final write will tell.
        this.ctx.logger.debug({ err: errorMessage(err) }, 'Progress write failed');
      }
    });
  }

  /** Waits for writes in flight and returns the latest stored record (null if the job is gone). */
  async settle(): Promise<StoredJob | null> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
    await this.chain;
    if (this.stored) {
      // A final check, as no write may have happened since the job was deleted.
      const fresh = await this.ctx.store
        .get(this.stored.record.kind, this.stored.record.id)
        .catch(() => this.stored);
      if (!fresh || fresh.raw !== this.stored.raw) this.stored = null;
    }
    return this.stored;
  }
}
