import { nanos } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type Consumer,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type StreamConfig,
} from '@nats-io/jetstream';
import type { Config } from './config.js';
import { ensureConsumer, ensureStream, retryJetStreamSetup } from './nats.js';
import { errorMessage } from './errors.js';
import { jobEventSchema } from './events.js';
import type { JobKind, JobRecord, WebhookAttempt } from './job-record.js';
import { safeJson } from './job-runner.js';
import type { ServiceContext } from './service.js';
import {
  EVENTS_STREAM,
  WEBHOOKS_STREAM,
  WEBHOOK_CONSUMERS,
  WEBHOOK_DELIVERY_SUBJECT,
  WEBHOOK_EVENT_TYPES,
  jobEventSubject,
  jobEventTypeFilter,
} from './subjects.js';
import {
  deliveryMessageId,
  postWebhook,
  shownUrl,
  webhookBackoffMs,
  webhookDeliveryMessage,
  webhookId,
  type WebhookDelivery,
} from './webhook-delivery.js';
import { webhookKey } from './webhook-signature.js';
import { callbackUrls, recordWebhookAttempt } from './webhook-store.js';

type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** `WEBHOOKS`: one message per delivery still to make; an acked (or given-up) one is removed. */
export function webhooksStreamConfig(
  config: Pick<Config, 'natsReplicas'>,
): Partial<StreamConfig> & { name: string; subjects: string[] } {
  return {
    name: WEBHOOKS_STREAM,
    subjects: [WEBHOOK_DELIVERY_SUBJECT],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(2 * 60_000),
    // A backstop only: every delivery ends acked or terminated long before.
    max_age: nanos(7 * 24 * 3_600_000),
    num_replicas: config.natsReplicas,
  };
}

/** The fan-out consumers on `EVENTS`: new events only (a first start does not replay history). */
export function webhookEventConsumerConfig(
  type: WebhookEventType,
): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: WEBHOOK_CONSUMERS[type],
    filter_subject: jobEventTypeFilter(type),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.New,
    ack_wait: nanos(30_000),
    max_deliver: -1,
    max_ack_pending: 1000,
  };
}

/**
 * The delivery consumer. A delivery waiting out its backoff (a nak with a delay) counts as
 * pending, so the limit is high: receivers that keep failing must not fill it. Attempts are
 * bounded by the sender itself (it terminates the last one), not by `max_deliver`, so no
 * message is ever left behind in the work queue.
 */
export function webhookDeliveryConsumerConfig(
  config: Pick<Config, 'webhookTimeoutMs'>,
): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: WEBHOOK_CONSUMERS.deliver,
    filter_subject: WEBHOOK_DELIVERY_SUBJECT,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    // One attempt is bounded by its timeout; past this, a sender that died (SIGKILL) mid-attempt
    // has its delivery handed to another.
    ack_wait: nanos(config.webhookTimeoutMs + 10_000),
    max_deliver: -1,
    max_ack_pending: 100_000,
  };
}

async function ensureWebhookJetStream(jsm: JetStreamManager, config: Config): Promise<void> {
  await ensureStream(jsm, webhooksStreamConfig(config));
  for (const type of WEBHOOK_EVENT_TYPES)
    await ensureConsumer(jsm, EVENTS_STREAM, webhookEventConsumerConfig(type));
  await ensureConsumer(jsm, WEBHOOKS_STREAM, webhookDeliveryConsumerConfig(config));
}

export interface WebhookTarget {
  url: string;
  source: WebhookDelivery['source'];
}

/**
 * Queues one delivery per target. The message id makes a second fan-out of the same event
 * (a redelivered event, or the gateway's own send for a job that had already ended) a no-op
 * inside the 2-minute duplicate window.
 */
export async function queueWebhooks(
  js: JetStreamClient,
  job: { kind: JobKind; id: string; createdAt: string | null; generation: string },
  event: WebhookEventType,
  body: string,
  targets: readonly WebhookTarget[],
): Promise<void> {
  const id = webhookId(job.kind, job.id, job.generation, event);
  await Promise.all(
    targets.map((t) => {
      const delivery: WebhookDelivery = {
        v: 1,
        webhook_id: id,
        url: t.url,
        source: t.source,
        kind: job.kind,
        job_id: job.id,
        created_at: job.createdAt,
        event,
        body,
      };
      return js.publish(WEBHOOK_DELIVERY_SUBJECT, JSON.stringify(delivery), {
        msgID: deliveryMessageId(delivery),
      });
    }),
  );
}

/**
 * The event a job that has already ended published: read back from `EVENTS` (last message on
 * its subject), or rebuilt from the record when the stream no longer holds it.
 */
export async function endedJobEvent(
  jsm: JetStreamManager,
  record: JobRecord,
): Promise<{ type: WebhookEventType; body: string } | null> {
  if (record.status !== 'completed' && record.status !== 'failed') return null;
  const type = record.status;
  const subject = jobEventSubject(record.kind, record.id, type);
  const stored = await jsm.streams.getMessage(EVENTS_STREAM, { last_by_subj: subject }).catch(() => null);
  if (stored) return { type, body: stored.string() };
  const base = { v: 1, at: record.updated_at, job_id: record.id, kind: record.kind };
  const event =
    type === 'completed'
      ? {
          ...base,
          type,
          result: record.result ?? {},
          duration_ms: Math.max(0, Date.parse(record.updated_at) - Date.parse(record.created_at)),
        }
      : {
          ...base,
          type,
          error: record.error ?? { code: 'job.failed', message: 'failed' },
          attempts: record.attempts,
        };
  return { type, body: JSON.stringify(event) };
}

/**
 * Pulls from `consumer` with at most `concurrency` handlers in flight; one slow or failing
 * message holds one slot for at most its own timeout.
 */
class PullLoop {
  private readonly inFlight = new Set<Promise<void>>();
  private stopping = false;
  private current: ConsumerMessages | undefined;
  private slotFreed: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly name: string,
    private readonly concurrency: number,
    private readonly handle: (msg: JsMsg) => Promise<void>,
  ) {}

  start(consumer: Consumer): void {
    this.loop = this.pull(consumer);
  }

  private async pull(consumer: Consumer): Promise<void> {
    while (!this.stopping) {
      const free = this.concurrency - this.inFlight.size;
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
          const done: Promise<void> = this.handle(msg)
            .catch((err: unknown) => {
              this.ctx.logger.error({ err, consumer: this.name }, 'Webhook handling failed unexpectedly');
              msg.nak(1000);
            })
            .finally(() => {
              this.inFlight.delete(done);
              this.slotFreed?.();
              this.slotFreed = undefined;
            });
          this.inFlight.add(done);
        }
      } catch (err) {
        if (this.stopping) break;
        this.ctx.logger.warn({ err: errorMessage(err), consumer: this.name }, 'Cannot fetch; retrying');
        await new Promise((r) => setTimeout(r, 1000));
      } finally {
        this.current = undefined;
      }
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.slotFreed?.();
    this.current?.stop();
    await Promise.all([...this.inFlight]);
    await this.loop;
  }
}

export interface WebhookSender {
  /** Stops pulling and lets attempts in flight end (each is bounded by its timeout). Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Sends every job's `completed` and `failed` event to the job's callback URLs and to
 * `WEBHOOK_URLS`, at least once: the durable consumers keep their place across restarts and
 * a SIGKILL, an event is acked only once its deliveries are queued, and a delivery only once
 * it got a 2xx or was given up. Every replica that runs it shares the consumers.
 */
export async function startWebhookSender(ctx: ServiceContext): Promise<WebhookSender> {
  const { config, logger, nc, redis, store } = ctx;
  await retryJetStreamSetup(
    'the WEBHOOKS stream and its consumers',
    async () => ensureWebhookJetStream(await jetstreamManager(nc), config),
    logger,
  );
  const js = jetstream(nc, { timeout: 5000 });
  const key = config.webhookSecret ? webhookKey(config.webhookSecret) : null;

  const fanOut = async (msg: JsMsg): Promise<void> => {
    const parsed = jobEventSchema.safeParse(safeJson(msg.data));
    if (!parsed.success || (parsed.data.type !== 'completed' && parsed.data.type !== 'failed')) {
      msg.ack();
      return;
    }
    const event = parsed.data;
    const type = event.type as WebhookEventType;
    try {
      // The record names the generation whose callbacks to call; one that moved on (a failed
      // job submitted again) or is gone leaves only WEBHOOK_URLS.
      const stored = await store.get(event.kind, event.job_id);
      const createdAt = stored?.record.status === type ? stored.record.created_at : null;
      const callbacks = createdAt ? await callbackUrls(redis, event.kind, event.job_id, createdAt) : [];
      const targets: WebhookTarget[] = [
        ...callbacks.map((url) => ({ url, source: 'callback' as const })),
        ...config.webhookUrls
          .filter((url) => !callbacks.includes(url))
          .map((url) => ({ url, source: 'global' as const })),
      ];
      if (targets.length > 0) {
        const job = { kind: event.kind, id: event.job_id, createdAt, generation: createdAt ?? event.at };
        await queueWebhooks(js, job, type, msg.string(), targets);
      }
      msg.ack();
    } catch (err) {
      logger.warn({ job_id: event.job_id, err: errorMessage(err) }, 'Cannot queue webhooks; retrying');
      msg.nak(2000);
    }
  };

  const deliver = async (msg: JsMsg): Promise<void> => {
    const parsed = webhookDeliveryMessage.safeParse(safeJson(msg.data));
    if (!parsed.success) {
      logger.warn({ seq: msg.seq }, 'Dropping a malformed webhook delivery');
      msg.term();
      return;
    }
    const d = parsed.data;
    const attempt = msg.info.deliveryCount;
    const started = new Date();
    const t0 = performance.now();
    const result = await postWebhook(d, {
      key,
      timeoutMs: config.webhookTimeoutMs,
      checkAddress: d.source === 'callback' && !config.allowPrivateUrls,
      now: started,
    });
    const durationMs = Math.round(performance.now() - t0);
    const ok = result.status !== null && result.status >= 200 && result.status < 300;
    // 410 Gone: the receiver asks for no more (Standard Webhooks' advice).
    const last = !ok && (attempt >= config.webhookMaxAttempts || result.status === 410);
    const delay = ok || last ? 0 : nextDelay(attempt, config.webhookRetryBaseMs, result.retryAfterS);
    const entry: WebhookAttempt = {
      url: shownUrl(d.url),
      event: d.event,
      webhook_id: d.webhook_id,
      attempt,
      at: started.toISOString(),
      status: result.status,
      duration_ms: durationMs,
      ...(result.error === undefined ? {} : { error: result.error.slice(0, 500) }),
      outcome: ok ? 'delivered' : last ? 'gave_up' : 'retrying',
      ...(delay > 0 ? { next_attempt_at: new Date(Date.now() + delay).toISOString() } : {}),
    };
    if (d.created_at) {
      await recordWebhookAttempt(redis, d.kind, d.job_id, d.created_at, entry).catch((err: unknown) =>
        logger.warn({ job_id: d.job_id, err: errorMessage(err) }, 'Cannot list the webhook attempt'),
      );
    }
    const log = { job_id: d.job_id, url: entry.url, attempt, status: result.status, duration_ms: durationMs };
    if (ok) {
      msg.ack();
      logger.info(log, 'Webhook delivered');
    } else if (last) {
      msg.term();
      logger.warn({ ...log, err: result.error }, 'Webhook given up');
    } else {
      msg.nak(delay);
      logger.info({ ...log, err: result.error, retry_in_ms: delay }, 'Webhook attempt failed; retrying');
    }
  };

  const loops = [
    ...WEBHOOK_EVENT_TYPES.map((t) => ({
      loop: new PullLoop(ctx, WEBHOOK_CONSUMERS[t], 16, fanOut),
      stream: EVENTS_STREAM,
      name: WEBHOOK_CONSUMERS[t],
    })),
    {
      loop: new PullLoop(ctx, WEBHOOK_CONSUMERS.deliver, config.webhookConcurrency, deliver),
      stream: WEBHOOKS_STREAM,
      name: WEBHOOK_CONSUMERS.deliver,
    },
  ];
  for (const l of loops) l.loop.start(await js.consumers.get(l.stream, l.name));
  logger.info(
    { urls: config.webhookUrls.length, signed: key !== null, concurrency: config.webhookConcurrency },
    'Webhook sender started',
  );

  let stopped: Promise<void> | undefined;
  return {
    stop() {
      stopped ??= Promise.all(loops.map((l) => l.loop.stop())).then(() => undefined);
      return stopped;
    },
  };
}

/** The backoff delay, or a longer `Retry-After` (both at most one hour). */
function nextDelay(attempt: number, baseMs: number, retryAfterS: number | undefined): number {
  const backoff = webhookBackoffMs(attempt, baseMs);
  return retryAfterS ? Math.max(backoff, Math.min(3_600_000, retryAfterS * 1000)) : backoff;
}
