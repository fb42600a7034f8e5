import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
  type ConsumerConfig,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { backendOutage } from './backend-errors.js';
import type { Config } from './config.js';
import { JOB_KINDS } from './job-record.js';
import type { Logger } from './logger.js';
import { CONSUMERS, EVENTS_ALL, EVENTS_STREAM, JOBS_STREAM, JOB_SUBJECTS } from './subjects.js';

export type { NatsConnection } from '@nats-io/transport-node';

/** The dedupe window of `JOBS`: a re-published job request inside it is dropped by the server. */
export const JOBS_DUPLICATE_WINDOW_MS = 2 * 60_000;

/** Connections whose link to the server is down right now (between `disconnect` and `reconnect`). */
const offline = new WeakSet<NatsConnection>();

/**
 * Whether the connection has a live link to a server. While NATS is away the client buffers
 * publishes and a JetStream publish only fails at its timeout; callers that answer users
 * (the gateway) check this first to fail fast instead.
 */
export function natsConnected(nc: NatsConnection): boolean {
  return !nc.isClosed() && !offline.has(nc);
}

/**
 * Connects and keeps reconnecting for as long as the process lives: a NATS restart must not
 * stop a service, only pause it.
 */
export async function connectNats(
  config: Pick<Config, 'natsServers'>,
  name: string,
  logger?: Logger,
): Promise<NatsConnection> {
  const nc = await connect({
    // Every server of a cluster: the client also learns the others from the one it reaches,
    // and moves to another when its own goes away.
    servers: [...config.natsServers],
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: false,
    // A server that vanishes without closing the socket (a host or network failure) is noticed
    // within about 30 s instead of the client's default of several minutes; until then a
    // JetStream publish fails only at its own timeout.
    pingInterval: 10_000,
    maxPingOut: 3,
  });
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        offline.add(nc);
        logger?.warn({ server: s.server }, 'NATS disconnected');
      } else if (s.type === 'reconnect') {
        offline.delete(nc);
        logger?.info({ server: s.server }, 'NATS reconnected');
      } else if (s.type === 'error') logger?.warn({ err: s.error }, 'NATS error');
    }
  })();
  return nc;
}

export function jobsStreamConfig(
  config: Pick<Config, 'natsReplicas'>,
): Partial<StreamConfig> & { name: string; subjects: string[] } {
  return {
    name: JOBS_STREAM,
    subjects: Object.values(JOB_SUBJECTS),
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(JOBS_DUPLICATE_WINDOW_MS),
    num_replicas: config.natsReplicas,
  };
}

export function eventsStreamConfig(
  config: Pick<Config, 'cacheTtlMs' | 'natsReplicas'>,
): Partial<StreamConfig> & { name: string; subjects: string[] } {
  return {
    name: EVENTS_STREAM,
    subjects: [EVENTS_ALL],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: nanos(config.cacheTtlMs),
    // The server refuses a duplicate window longer than max_age; its default is 2 min, so an
    // update to a TTL under 2 min would fail without this.
    duplicate_window: nanos(Math.min(2 * 60_000, config.cacheTtlMs)),
    // Progress events are frequent; keep the stream bounded even under a long TTL.
    max_bytes: 1024 * 1024 * 1024,
    num_replicas: config.natsReplicas,
  };
}

export function workerConsumerConfig(
  kind: (typeof JOB_KINDS)[number],
  config: Pick<Config, 'jobAckWaitMs' | 'jobMaxDeliver'>,
): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: CONSUMERS[kind],
    filter_subject: JOB_SUBJECTS[kind],
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(config.jobAckWaitMs),
    max_deliver: config.jobMaxDeliver,
    max_ack_pending: 1000,
    max_waiting: 512,
  };
}

function isNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && (err.code === 404 || /not found/i.test(err.message));
}

/** Creates the stream, or updates it where its configuration differs. */
export async function ensureStream(
  jsm: JetStreamManager,
  cfg: Partial<StreamConfig> & { name: string },
): Promise<void> {
  try {
    const info = await jsm.streams.info(cfg.name);
    const current = info.config as unknown as Record<string, unknown>;
    const changed = Object.entries(cfg).some(([k, v]) => JSON.stringify(current[k]) !== JSON.stringify(v));
    if (changed) await jsm.streams.update(cfg.name, cfg);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await jsm.streams.add(cfg);
  }
}

/** Creates the durable consumer, or updates it where its configuration differs (name, filter and start stay). */
export async function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  cfg: Partial<ConsumerConfig> & { durable_name: string },
): Promise<void> {
  try {
    const info = await jsm.consumers.info(stream, cfg.durable_name);
    const current = info.config as unknown as Record<string, unknown>;
    const changed = Object.entries(cfg).some(([k, v]) => JSON.stringify(current[k]) !== JSON.stringify(v));
    if (changed) {
      const { durable_name: _n, filter_subject: _f, deliver_policy: _d, ...update } = cfg;
      await jsm.consumers.update(stream, cfg.durable_name, update);
    }
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await jsm.consumers.add(stream, cfg);
  }
}

/**
 * JetStream's answers that mean "not yet" while a cluster forms or loses nodes: no suitable
 * peers for placement (10005), cluster not available (10008), insufficient resources (10023).
 */
const NOT_READY_API_CODES = new Set([10005, 10008, 10023]);

/** Why a set-up step may succeed if tried again (an outage, or a cluster not ready), or null. */
function setupNotReady(err: unknown): string | null {
  const outage = backendOutage(err);
  if (outage?.backend === 'nats') return outage.reason;
  if (err instanceof JetStreamApiError && NOT_READY_API_CODES.has(err.code)) return `nats.api_${err.code}`;
  return null;
}

/** How long a service's start waits for JetStream to take its streams, consumers and buckets. */
export const JETSTREAM_SETUP_BUDGET_MS = 120_000;

/**
 * Runs an idempotent JetStream set-up step (streams, consumers, buckets) again while JetStream
 * cannot answer yet: a cluster still electing its meta leader, or every node busy placing
 * replicas while several services start at once, times out, answers 503 or finds no peers
 * for the replicas. A start waits for it, with one warning per attempt, instead of exiting; any other error ends the start at once.
 */
export async function retryJetStreamSetup<T>(
  what: string,
  step: () => Promise<T>,
  logger?: Logger,
  budgetMs = JETSTREAM_SETUP_BUDGET_MS,
): Promise<T> {
  const deadline = Date.now() + budgetMs;
  for (let attempt = 1, delay = 250; ; attempt++, delay = Math.min(delay * 2, 5000)) {
    try {
      return await step();
    } catch (err) {
      const reason = setupNotReady(err);
      if (reason === null || Date.now() + delay > deadline) throw err;
      logger?.warn({ attempt, reason, retryInMs: delay }, `JetStream not ready for ${what}; trying again`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/**
 * Creates or updates `JOBS`, `EVENTS` and both worker consumers. Idempotent, so every service
 * runs it at start and a restart with a new `CACHE_TTL_HOURS` updates `EVENTS`' max_age.
 */
export async function ensureJetStream(
  nc: NatsConnection,
  config: Pick<Config, 'cacheTtlMs' | 'jobAckWaitMs' | 'jobMaxDeliver' | 'natsReplicas'>,
): Promise<JetStreamManager> {
  const jsm = await jetstreamManager(nc);
  await ensureStream(jsm, jobsStreamConfig(config));
  await ensureStream(jsm, eventsStreamConfig(config));
  for (const kind of JOB_KINDS) await ensureConsumer(jsm, JOBS_STREAM, workerConsumerConfig(kind, config));
  return jsm;
}
