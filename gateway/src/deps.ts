import type {
  Config,
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
}
