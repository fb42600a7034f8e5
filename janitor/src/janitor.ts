import {
  JANITOR_SUBJECTS,
  LAST_SWEEP_KEY,
  RedisLock,
  SWEEP_LOCK_KEY,
  closeContext,
  createLogger,
  errorMessage,
  openContext,
  startConfigAnnouncer,
  type Config,
  type JanitorOrphanProgress,
  type Logger,
  type ServiceContext,
} from '@media-jobs/libs';
import { watchConfig } from './config-watch.js';
import { PROBE_ABOVE_FILES, sweepOrphans, sweepTmp, type OrphanBudget } from './orphans.js';
import { Reconciler, type ReconcileReport } from './reconcile.js';
import { sweepEvent, sweepLine, type SweepSummary, type SweepTrigger } from './report.js';
import { emptyTotals, sweepExpired, type SweepContext, type SweepHooks } from './sweep.js';

export interface JanitorOptions {
  /** Index entries (and files per folder chunk) handled per step; bounds the sweep's memory. */
  batchSize?: number;
  /** Expired jobs whose files are found with one pass over each folder. */
  fileBatchSize?: number;
  /** Expiry of the sweep lock, extended while the sweep runs; a killed janitor frees it this late. */
  lockTtlMs?: number;
  /** How long an on-demand sweep waits for another replica's sweep to finish. */
  lockWaitMs?: number;
  hooks?: SweepHooks;
  /** The sweep's clock (tests move it forward instead of waiting hours). */
  now?: () => number;
  /**
   * How much of the buckets one sweep's orphan slice scans (files, and milliseconds after
   * which it ends with the chunk in hand); the next sweep resumes there.
   */
  orphanBudget?: OrphanBudget;
  /** Files stored (as the last orphan pass counted) above which expired jobs' result files are found by name, not by listing. */
  probeAboveFiles?: number;
}

export interface Janitor {
  readonly instance: string;
  /** Sweeps now (or joins this process's sweep in progress) and returns the summary. */
  sweepNow(trigger: SweepTrigger): Promise<SweepSummary>;
  /** One reconcile pass now: lost job requests sent again. */
  reconcileNow(): Promise<ReconcileReport>;
  /** Stops the timer and subscriptions, lets a sweep in progress end its batch, closes connections. Safe to call twice. */
  stop(): Promise<void>;
}

/** What one sweep aims to stay under: the orphan slice gets the rest after the expiry pass. */
const SWEEP_TARGET_MS = 700;
const ORPHAN_SLICE_MIN_MS = 20;

const DEFAULTS = {
  batchSize: 1000,
  fileBatchSize: 3000,
  lockTtlMs: 30_000,
  lockWaitMs: 20_000,
  hooks: {},
  now: Date.now,
  orphanBudget: { files: 200_000, ms: 400 },
  probeAboveFiles: PROBE_ABOVE_FILES,
} satisfies Required<JanitorOptions>;

/**
 * The janitor service: a sweep at start and every `CLEANUP_INTERVAL_MINUTES`, on demand over
 * `janitor.cleanup`; a reconcile pass every half ack wait (lost job requests sent again); and
 * warnings when other services run with a different TTL or interval.
 */
export async function startJanitor(
  config: Config,
  logger: Logger = createLogger('janitor', config),
  options: JanitorOptions = {},
): Promise<Janitor> {
  const ctx = await openContext('janitor', config, logger);
  const sweeper = new Sweeper(ctx, { ...DEFAULTS, ...options });
  const stopAnnouncer = startConfigAnnouncer(ctx);
  const configSub = watchConfig(ctx);
  const cleanupSub = serveCleanup(ctx, sweeper);
  // The server has the subscriptions before "Janitor started" is logged: the janitor answers from then on.
  await ctx.nc.flush();
  await sweeper
    .run('startup')
    .catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'Start-up sweep failed'));
  sweeper.schedule();
  const reconciler = new Reconciler(ctx);
  reconciler.start();
  logger.info({ instance: ctx.instance }, 'Janitor started');

  let stopped: Promise<void> | undefined;
  return {
    instance: ctx.instance,
    sweepNow: (trigger) => sweeper.run(trigger),
    reconcileNow: () => reconciler.run(),
    stop() {
      stopped ??= (async () => {
        stopAnnouncer();
        configSub.unsubscribe();
        cleanupSub.unsubscribe();
        await Promise.all([sweeper.stop(), reconciler.stop()]);
        await closeContext(ctx);
      })();
      return stopped;
    },
  };
}

/** Answers `janitor.cleanup` (queue group: one replica per request) with the sweep summary. */
function serveCleanup(ctx: ServiceContext, sweeper: Sweeper): ReturnType<ServiceContext['nc']['subscribe']> {
  return ctx.nc.subscribe(JANITOR_SUBJECTS.cleanupRequest, {
    queue: 'janitor',
    callback: (err, msg) => {
      if (err) return;
      sweeper.run('admin').then(
        (summary) => msg.respond(JSON.stringify({ ok: true, summary })),
        (e: unknown) =>
          msg.respond(
            JSON.stringify({ ok: false, error: { code: 'janitor.sweep_failed', message: errorMessage(e) } }),
          ),
      );
    },
  });
}

/** Runs sweeps one at a time in this process, and under the Redis lock across replicas. */
class Sweeper {
  private current: Promise<SweepSummary> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private nextRunAt: number | null = null;
  private stopping = false;

  /** One lock object for this process's sweeps, so a release Redis missed is made up at the next sweep. */
  private readonly lock: RedisLock;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly options: Required<JanitorOptions>,
  ) {
    this.lock = new RedisLock(ctx.redis, SWEEP_LOCK_KEY, options.lockTtlMs);
  }

  run(trigger: SweepTrigger): Promise<SweepSummary> {
    this.current ??= this.sweep(trigger).finally(() => (this.current = undefined));
    return this.current;
  }

  schedule(): void {
    if (this.stopping) return;
    const interval = this.ctx.config.cleanupIntervalMs;
    this.nextRunAt = Date.now() + interval;
    this.timer = setTimeout(() => {
      this.run('interval')
        .catch((err: unknown) => this.ctx.logger.error({ err: errorMessage(err) }, 'Sweep failed'))
        .finally(() => this.schedule());
    }, interval);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    await this.current?.catch(() => undefined);
  }

  private async sweep(trigger: SweepTrigger): Promise<SweepSummary> {
    const lock = this.lock;
    if (!(await this.acquire(lock, trigger === 'admin' ? this.options.lockWaitMs : 0))) {
      this.ctx.logger.info({ trigger }, 'Cleanup skipped: another janitor is sweeping');
      return this.summary(trigger, Date.now(), emptyTotals(), true);
    }
    const started = Date.now();
    const now = this.options.now();
    const keepAlive = setInterval(
      () => void lock.extend().catch(() => undefined),
      Math.max(100, this.options.lockTtlMs / 3),
    );
    try {
      const totals = emptyTotals();
      const sweepCtx = this.sweepContext(lock);
      await sweepExpired(sweepCtx, now, totals);
      // The orphan slice has what is left of the sweep's time after the expiry pass (always
      // at least one chunk), so a sweep that removed many expired jobs scans fewer files.
      const budget = this.options.orphanBudget;
      const left = Math.max(ORPHAN_SLICE_MIN_MS, SWEEP_TARGET_MS - (Date.now() - started));
      const orphans = await sweepOrphans(sweepCtx, now, totals, { ...budget, ms: Math.min(budget.ms, left) });
      await sweepTmp(sweepCtx, now, totals);
      const summary = this.summary(trigger, started, totals, false, orphans);
      await this.publish(summary);
      return summary;
    } finally {
      clearInterval(keepAlive);
      await lock.release().catch(() => undefined);
    }
  }

  private async acquire(lock: RedisLock, waitMs: number): Promise<boolean> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      if (await lock.acquire()) return true;
      if (Date.now() >= deadline || this.stopping) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private sweepContext(lock: RedisLock): SweepContext {
    const { redis, storage, files, events, logger, config } = this.ctx;
    return {
      redis,
      storage,
      files,
      events,
      logger,
      config,
      batchSize: this.options.batchSize,
      fileBatchSize: this.options.fileBatchSize,
      hooks: this.options.hooks,
      probeAboveFiles: this.options.probeAboveFiles,
      stillOwner: () => lock.held && !this.stopping,
    };
  }

  private summary(
    trigger: SweepTrigger,
    started: number,
    totals: ReturnType<typeof emptyTotals>,
    skipped: boolean,
    orphans?: JanitorOrphanProgress,
  ): SweepSummary {
    // A timed sweep is followed by the next one an interval after it ends; an admin sweep leaves the timer as it is.
    const next = this.stopping
      ? null
      : trigger === 'admin'
        ? this.nextRunAt
        : Date.now() + this.ctx.config.cleanupIntervalMs;
    return {
      trigger,
      instance: this.ctx.instance,
      started_at: new Date(started).toISOString(),
      duration_ms: Date.now() - started,
      ...totals,
      next_run_at: next === null ? null : new Date(next).toISOString(),
      skipped,
      ...(orphans ? { orphans } : {}),
    };
  }

  private async publish(summary: SweepSummary): Promise<void> {
    const { redis, events, logger, config } = this.ctx;
    await redis.set(LAST_SWEEP_KEY, JSON.stringify(summary));
    events.publish(JANITOR_SUBJECTS.sweep, sweepEvent(summary));
    logger.info(
      {
        ...summary.removed,
        bytes_freed: summary.bytes_freed,
        trigger: summary.trigger,
        ...(summary.orphans ? { orphans: summary.orphans } : {}),
      },
      sweepLine(summary, config.cleanupIntervalMinutes),
    );
  }
}
