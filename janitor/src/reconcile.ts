import {
  ACTIVE_INDEX,
  JobQueue,
  LuaScript,
  RedisLock,
  errorMessage,
  jobRecordSchema,
  jobRequestKey,
  queuedRequests,
  safeJson,
  type ServiceContext,
  type StoredJob,
} from '@media-jobs/libs';

/**
 * The reconciler: no job stays `queued` or `processing` when nothing will ever move it on.
 *
 * A job under way has an entry in `jobs:active` whose score is its last sign of life (the
 * record's last write, or its worker's heartbeat every ack wait / 3). An entry silent for
 * two ack waits is a candidate. Its request is looked for in `JOBS` (WorkQueue retention:
 * a request is there until a worker acks it):
 * - request there: it waits for a worker, or JetStream delivers it again (its worker died),
 *   so it is left alone and looked at again two ack waits later;
 * - request gone (a gateway died between the record and the publish, JetStream lost it in a
 *   hard crash, the stream was purged): the record goes back to `queued` (compare-and-set)
 *   and the request is sent anew, with a `queued` event whose reason is `recovered`.
 *
 * No job runs twice at once: a running job's worker beats every ack wait / 3, and gives the
 * job up by itself once its beats have not reached Redis for one ack wait, long before it
 * counts as silent here.
 */

/** Candidates looked at per pass. */
const BATCH = 500;
/** Requests read from `JOBS` per pass at most; beyond that every candidate counts as queued. */
const SCAN_LIMIT = 100_000;

// The oldest silent entries: removes those whose record is gone or finished, returns the
// others' keys and records. KEYS: active index. ARGV: silent for ms, batch.
const SILENT = new LuaScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, key in ipairs(keys) do
  local cur = redis.call('GET', key)
  local status = cur and string.match(cur, '"status":"(%a+)"')
  if status == 'queued' or status == 'processing' then
    out[#out + 1] = key
    out[#out + 1] = cur
  else
    redis.call('ZREM', KEYS[1], key)
  end
end
return out
`);

export interface ReconcileReport {
  /** Silent jobs looked at. */
  checked: number;
  /** Requests sent anew. */
  requeued: number;
}

export class Reconciler {
  private timer: NodeJS.Timeout | undefined;
  private current: Promise<ReconcileReport> | undefined;
  private stopping = false;
  private readonly queue: JobQueue;
  private readonly lock: RedisLock;

  constructor(
    private readonly ctx: ServiceContext,
    /** Silence (no write, no heartbeat) after which a job is looked at: two ack waits. */
    private readonly silentMs = 2 * ctx.config.jobAckWaitMs,
    /** Time between passes: half an ack wait, so a lost request is sent anew within about 2.5 ack waits. */
    private readonly intervalMs = Math.max(500, ctx.config.jobAckWaitMs / 2),
  ) {
    this.queue = new JobQueue(ctx.nc);
    this.lock = new RedisLock(ctx.redis, 'janitor:reconcile_lock', Math.max(10_000, silentMs));
  }

  start(): void {
    if (this.stopping) return;
    this.timer = setTimeout(() => {
      this.run()
        .catch((err: unknown) =>
          this.ctx.logger.warn({ err: errorMessage(err) }, 'Reconcile pass failed; retrying'),
        )
        .finally(() => this.start());
    }, this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    await this.current?.catch(() => undefined);
  }

  /** One pass now (or the one in progress), under a lock so one janitor replica reconciles at a time. */
  run(): Promise<ReconcileReport> {
    this.current ??= this.pass().finally(() => (this.current = undefined));
    return this.current;
  }

  private async pass(): Promise<ReconcileReport> {
    const report: ReconcileReport = { checked: 0, requeued: 0 };
    const lock = this.lock;
    if (!(await lock.acquire())) return report;
    try {
      const reply = (await SILENT.run(this.ctx.redis, [ACTIVE_INDEX], [this.silentMs, BATCH])) as string[];
      const silent: StoredJob[] = [];
      for (let i = 0; i + 1 < reply.length; i += 2) {
        const key = reply[i] as string;
        const raw = reply[i + 1] as string;
        const parsed = jobRecordSchema.safeParse(safeJson(raw));
        if (parsed.success) silent.push({ key, raw, record: parsed.data });
      }
      if (silent.length === 0) return report;
      report.checked = silent.length;
      const queued = await queuedRequests(
        this.ctx.nc,
        silent.map((j) => j.record.kind),
        SCAN_LIMIT,
      );
      if (queued === null) {
        this.ctx.logger.warn({ limit: SCAN_LIMIT }, 'JOBS holds too many requests to reconcile this pass');
      }
      const present: StoredJob[] = [];
      for (const job of silent) {
        if (this.stopping) break;
        if (queued === null || queued.has(jobRequestKey(job.record))) {
          present.push(job);
        } else if (await this.resend(job)) {
          report.requeued += 1;
        }
      }
      // Waiting its turn, or to be delivered again: looked at again after another silence.
      await this.ctx.store.heartbeat(present.map((j) => j.key));
      if (report.requeued > 0) {
        this.ctx.logger.info(report, `Reconciled: ${report.requeued} lost job request(s) sent again`);
      }
      return report;
    } finally {
      await lock.release().catch(() => undefined);
    }
  }

  /** Back to `queued` if the record is still what was read, then the request goes out again. */
  private async resend(job: StoredJob): Promise<boolean> {
    const { kind, id } = job.record;
    const queued = await this.ctx.store.update(job, { status: 'queued', progress: 0 });
    if (!queued) return false;
    const { request, expires_at } = queued.record;
    this.ctx.events.job(kind, id, 'queued', { request, expires_at, reason: 'recovered' });
    try {
      await this.queue.enqueue(queued.record, { resend: true });
    } catch (err) {
      // The record stays queued and silent: the next pass after another silence tries again.
      this.ctx.logger.warn({ job_id: id, err: errorMessage(err) }, 'Cannot send a lost job request again');
      return false;
    }
    this.ctx.logger.warn(
      { job_id: id, kind, was: job.record.status },
      'Job request was lost; queued it again',
    );
    return true;
  }
}
