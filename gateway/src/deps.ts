import type {
  Config,
  DeletionHooks,
  EventPublisher,
  FileStore,
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
  /** Local folders; with `STORAGE=nats` only `tmp` (uploads arrive there). */
  storage: Storage;
  /** Where results and uploads live (`STORAGE`). */
  files: FileStore;
  events: EventPublisher;
  /** Test seams only; production passes none. */
  hooks?: GatewayHooks;
}

export interface GatewayHooks {
  /** Between the steps of `DELETE /jobs/:id`. */
  deletion?: DeletionHooks;
}
