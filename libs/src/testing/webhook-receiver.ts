import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request a receiver got, with the raw body (a signature covers the exact bytes). */
export interface ReceivedWebhook {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** Date.now() when the request was complete. */
  readonly at: number;
  /** Requests held open by `hang` when this one came, by path: what it did not wait for. */
  readonly heldMeanwhile: Readonly<Record<string, number>>;
}

/** A status to answer with, or `hang`: hold the request open and never answer. */
export type WebhookReply = number | 'hang';

export interface WebhookReceiver {
  /** `http://127.0.0.1:<port>`. */
  readonly origin: string;
  readonly received: readonly ReceivedWebhook[];
  /** Answers the next requests to `path` with `replies` in order, then with `then` (default 200). */
  script(path: string, replies: WebhookReply[], then?: WebhookReply): void;
  /** The requests to `path` so far. */
  to(path: string): ReceivedWebhook[];
  /** Requests to `path` held open now (`hang`), not yet closed by the sender. */
  held(path: string): number;
  close(): Promise<void>;
}

/** A webhook receiver on 127.0.0.1 (node:http) whose answers each test scripts per path. */
export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const received: ReceivedWebhook[] = [];
  const scripts = new Map<string, { replies: WebhookReply[]; then: WebhookReply }>();
  const holding = new Map<string, Set<ServerResponse>>();
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({
        path,
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at: Date.now(),
        heldMeanwhile: Object.fromEntries([...holding].map(([p, set]) => [p, set.size])),
      });
      const script = scripts.get(path);
      const reply = script ? (script.replies.shift() ?? script.then) : 200;
      if (reply !== 'hang') return void res.writeHead(reply, { 'content-type': 'text/plain' }).end('ok');
      const set = holding.get(path) ?? new Set<ServerResponse>();
      holding.set(path, set);
      set.add(res);
      res.on('close', () => set.delete(res));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    received,
    script: (path, replies, then = 200) => void scripts.set(path, { replies: [...replies], then }),
    to: (path) => received.filter((r) => r.path === path),
    held: (path) => holding.get(path)?.size ?? 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
