import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  startConfigAnnouncer,
  closeContext,
  createLogger,
  JobQueue,
  openContext,
  startWebhookSender,
  type Config,
  type Logger,
} from '@media-jobs/libs';
import { createApp } from './app.js';
import type { GatewayHooks } from './deps.js';

export interface Gateway {
  readonly url: string;
  readonly port: number;
  /** Stops accepting, lets open requests finish, then closes NATS and Redis. Safe to call twice. */
  stop(): Promise<void>;
}

export async function startGateway(
  config: Config,
  logger: Logger = createLogger('gateway', config),
  options: { hooks?: GatewayHooks } = {},
): Promise<Gateway> {
  const ctx = await openContext('gateway', config, logger);
  // Every gateway replica shares the webhook consumers, so webhooks go out while any runs.
  const webhooks = await startWebhookSender(ctx).catch(async (err: unknown) => {
    await closeContext(ctx);
    throw err;
  });
  // Under load many requests each send one command per event-loop turn: ioredis then writes
  // them to the socket together (one write instead of one per request), which on the
  // cache-hit paths was the largest single cost. Each command keeps its own reply and error.
  ctx.redis.options.enableAutoPipelining = true;
  const app = createApp({ ...ctx, queue: new JobQueue(ctx.nc), ...options });
  const server: Server = createServer(
    {
      // Node's default, pinned so a --max-http-header-size flag cannot raise it: larger is a 431.
      maxHeaderSize: 16 * 1024,
      // A client that trickles its headers (slowloris) is cut off after 20 s with a 408.
      headersTimeout: Math.min(20_000, config.requestTimeoutMs),
      // The whole request, an upload included, must arrive within REQUEST_TIMEOUT_SECONDS;
      // responses (file downloads, event streams) are not bounded by it.
      requestTimeout: config.requestTimeoutMs,
      // How often the two limits above are checked (Node's default, 30 s, would let a
      // trickling client stay up to 30 s past them).
      connectionsCheckingInterval: Math.min(5_000, Math.max(100, config.requestTimeoutMs / 4)),
    },
    app,
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // Longer than a load balancer's idle timeout (60 s on the common ones), so it closes first.
  server.keepAliveTimeout = 65_000;
  const { port } = server.address() as AddressInfo;
  const stopAnnouncer = startConfigAnnouncer(ctx);
  logger.info({ port }, `Gateway listening on http://${config.host}:${port}`);

  let stopped: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stop() {
      stopped ??= (async () => {
        stopAnnouncer();
        await webhooks.stop();
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
