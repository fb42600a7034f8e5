import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { extname, join, normalize } from 'node:path';
import type { AddressInfo } from 'node:net';

const TYPES: Record<string, string> = {
  '.m3u8': 'application/vnd.apple.mpegurl',
  '.ts': 'video/mp2t',
  '.mp4': 'video/mp4',
  '.webm': 'video/webm',
  '.mp3': 'audio/mpeg',
  '.wav': 'audio/wav',
};

export interface FixtureServer {
  readonly origin: string;
  /** Every request's path, in order. */
  readonly requests: string[];
  /** Every request's path and headers, in order (what a cookie or a proxy test looks at). */
  readonly seen: { path: string; query: string; headers: IncomingHttpHeaders; at: number }[];
  /** Responses under way now, and the most there ever were at once since `resetPeak()`. */
  readonly active: number;
  readonly peakActive: number;
  resetPeak(): void;
  /** Serves `dir` under `/<prefix>/`. */
  mount(prefix: string, dir: string): void;
  /** Slows every response body down to about this many bytes a second (0: no limit). */
  throttle(bytesPerSecond: number): void;
  /** Answers `path` with this status and no body. */
  fail(path: string, status: number): void;
  count(pathPart: string): number;
  close(): Promise<void>;
}

/** A local static HTTP server for yt-dlp to download fixtures from, with a request log. */
export async function startFixtureServer(): Promise<FixtureServer> {
  const mounts = new Map<string, string>();
  const failures = new Map<string, number>();
  const requests: string[] = [];
  let rate = 0;
  const seen: FixtureServer['seen'][number][] = [];
  let active = 0;
  let peakActive = 0;

  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/');
    requests.push(path);
    seen.push({ path, query: (req.url ?? '').split('?')[1] ?? '', headers: req.headers, at: Date.now() });
    active += 1;
    peakActive = Math.max(peakActive, active);
    res.once('close', () => (active -= 1));
    const status = failures.get(path);
    if (status) {
      res.writeHead(status).end();
      return;
    }
    const [, prefix, ...rest] = path.split('/');
    const root = prefix ? mounts.get(prefix) : undefined;
    const rel = normalize(rest.join('/'));
    if (!root || rel.startsWith('..')) {
      res.writeHead(404).end();
      return;
    }
    const file = join(root, rel);
    stat(file).then(
      (st) => {
        if (!st.isFile()) return void res.writeHead(404).end();
        res.writeHead(200, {
          'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
          'content-length': st.size,
        });
        if (req.method === 'HEAD') return void res.end();
        const stream = createReadStream(file, {
          highWaterMark: rate > 0 ? Math.max(1024, Math.floor(rate / 10)) : 65536,
        });
        if (rate <= 0) return void stream.pipe(res);
        stream.on('data', (chunk) => {
          stream.pause();
          res.write(chunk);
          // A test may lift the throttle (rate 0) while a response is under way: the rest goes
          // at once (dividing by 0 gave an Infinity timeout and a TimeoutOverflowWarning).
          if (rate <= 0) stream.resume();
          else setTimeout(() => stream.resume(), Math.ceil((chunk.length / rate) * 1000));
        });
        stream.on('end', () => res.end());
        res.on('close', () => stream.destroy());
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    seen,
    get active() {
      return active;
    },
    get peakActive() {
      return peakActive;
    },
    resetPeak: () => void (peakActive = active),
    mount: (prefix, dir) => void mounts.set(prefix, dir),
    throttle: (bps) => void (rate = bps),
    fail: (path, status) => void failures.set(path, status),
    count: (part) => requests.filter((r) => r.includes(part)).length,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
