import type {
  Config,
  DeletionHooks,
  EventPublisher,
  JobQueue,
  JobStore,
  Logger,
  NatsConnection,
  Redis,
  Storage,
} from '@media-jobs/libs';

/** What the routes need, built once in `main.ts` (or a test) and passed in explicitly. */
export interface GatewayDeps {
  config: Config;
  logger: Logger;
  nc: NatsConnection;
  redis: Redis;
  store: JobStore;
  queue: JobQueue;
  storage: Storage;
  events: EventPublisher;
  /** Test seams only; production passes none. */
  hooks?: GatewayHooks;
}

export interface GatewayHooks {
  /** Between the steps of `DELETE /jobs/:id`. */
  deletion?: DeletionHooks;
}
