import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  announceConfig,
  closeContext,
  createLogger,
  JobQueue,
  openContext,
  type Config,
  type Logger,
} from '@media-jobs/libs';
import { createApp } from './app.js';

export interface Gateway {
  readonly url: string;
  readonly port: number;
  /** Stops accepting, lets open requests finish, then closes NATS and Redis. Safe to call twice. */
  stop(): Promise<void>;
}

export async function startGateway(config: Config, logger: Logger = createLogger('gateway', config)): Promise<Gateway> {
  const ctx = await openContext('gateway', config, logger);
  const app = createApp({ ...ctx, queue: new JobQueue(ctx.nc) });
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(config.port, config.host, (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 0; // uploads and file downloads may be long; each route bounds its own work
  const { port } = server.address() as AddressInfo;
  announceConfig(ctx);
  const announcer = setInterval(() => announceConfig(ctx), 60_000);
  announcer.unref();
  logger.info({ port }, `Gateway listening on http://${config.host}:${port}`);

  let stopped: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stop() {
      stopped ??= (async () => {
        clearInterval(announcer);
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
          setTimeout(() => server.closeAllConnections(), config.shutdownGraceMs).unref();
        });
        await closeContext(ctx);
      })();
      return stopped;
    },
  };
}
